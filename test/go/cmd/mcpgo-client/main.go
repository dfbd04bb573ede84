// An MCP client on github.com/mark3labs/mcp-go, the way Coder's chat daemon connects
// (client/transport Streamable HTTP, the user's token as Authorization: Bearer): initialize, list
// tools, call whoami, within 10 s (Coder's budget for connect and list). Prints
// {"tools": [...], "whoami": {...}} or exits 1 with the error.
//
// Usage: MCP_TOKEN=... mcpgo-client URL
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

func run(ctx context.Context, url string) (map[string]any, error) {
	headers := map[string]string{}
	if token := os.Getenv("MCP_TOKEN"); token != "" {
		headers["Authorization"] = "Bearer " + token
	}
	c, err := client.NewStreamableHttpClient(url, transport.WithHTTPHeaders(headers))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	initialize := mcp.InitializeRequest{}
	// Pinned: left to its default (the 2026-07-28 stateless core first), mcp-go v1.2.1 falls back
	// at initialize but then sends tools/list as 2026-07-28, which the go-sdk v1.8.0 server refuses
	// ("unsupported protocol version"), directly as through the sidecar.
	initialize.Params.ProtocolVersion = "2025-11-25"
	initialize.Params.ClientInfo = mcp.Implementation{Name: "mcpgo-client", Version: "0.1.0"}
	if _, err := c.Initialize(ctx, initialize); err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	tools, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		return nil, fmt.Errorf("list tools: %w", err)
	}
	names := []string{}
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	call := mcp.CallToolRequest{}
	call.Params.Name = "whoami"
	call.Params.Arguments = map[string]any{}
	result, err := c.CallTool(ctx, call)
	if err != nil {
		return nil, fmt.Errorf("call whoami: %w", err)
	}
	return map[string]any{"tools": names, "whoami": result.StructuredContent}, nil
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := run(ctx, os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
