// An MCP client on the official Go SDK (what newer Coder builds may use): initialize, list tools,
// call whoami, with the token from MCP_TOKEN as Authorization: Bearer, all within 10 s (Coder's
// budget for connect and list). Prints {"tools": [...], "whoami": {...}} or exits 1 with the error.
//
// Usage: MCP_TOKEN=... gosdk-client URL
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type bearer struct{ token string }

func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(req)
}

func run(ctx context.Context, url string) (map[string]any, error) {
	httpClient := &http.Client{}
	if token := os.Getenv("MCP_TOKEN"); token != "" {
		httpClient.Transport = bearer{token}
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "gosdk-client", Version: "0.1.0"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: httpClient, MaxRetries: -1}, nil)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer session.Close()
	tools, err := session.ListTools(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("list tools: %w", err)
	}
	names := []string{}
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	result, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
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
