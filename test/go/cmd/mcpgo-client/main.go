// An MCP client on github.com/mark3labs/mcp-go, the way Coder's chat daemon connects
// (client/transport Streamable HTTP, the user's token as Authorization: Bearer): initialize, list
// tools, call whoami, within 10 s (Coder's budget for connect and list). Prints
// {"tools": [...], "whoami": {...}} or exits 1 with the error.
//
// MCP_PROTOCOL is the protocol version it asks for: unset, 2025-11-25 (see run); "default", the
// library's own choice (2026-07-28 first, by server/discover, falling back to initialize).
// MCP_STEPS (comma-separated) runs these instead of list and whoami, each step's outcome recorded,
// and prints {"protocol", "tools", "steps": {step: {text | error}}}:
//
//	list            tools/list
//	call:NAME       tools/call of NAME (arguments from MCP_ARGS_NAME as JSON, default {});
//	                call:NAME#2 calls it again
//	ask             tools/call of ask_name, answering its elicitation with the name "alice"
//	listen          subscriptions/listen for tool list changes, then add_tool, then wait for the change
//
// Usage: MCP_TOKEN=... mcpgo-client URL
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

type alice struct{}

func (alice) Elicit(context.Context, mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{Action: mcp.ElicitationResponseActionAccept, Content: map[string]any{"name": "alice"}}}, nil
}

func textOf(result *mcp.CallToolResult) string {
	parts := []string{}
	for _, content := range result.Content {
		if t, ok := content.(mcp.TextContent); ok {
			parts = append(parts, t.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func outcome(text string, err error) map[string]any {
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	return map[string]any{"text": text}
}

func call(ctx context.Context, c *client.Client, name string) (string, error) {
	request := mcp.CallToolRequest{}
	request.Params.Name = name
	args := map[string]any{}
	if raw := os.Getenv("MCP_ARGS_" + strings.ToUpper(name)); raw != "" {
		if err := json.Unmarshal([]byte(raw), &args); err != nil {
			return "", err
		}
	}
	request.Params.Arguments = args
	result, err := c.CallTool(ctx, request)
	if err != nil {
		return "", err
	}
	if result.IsError {
		return "", fmt.Errorf("tool error: %s", textOf(result))
	}
	return textOf(result), nil
}

func run(ctx context.Context, url string) (map[string]any, error) {
	headers := map[string]string{}
	if token := os.Getenv("MCP_TOKEN"); token != "" {
		headers["Authorization"] = "Bearer " + token
	}
	trans, err := transport.NewStreamableHTTP(url, transport.WithHTTPHeaders(headers))
	if err != nil {
		return nil, err
	}
	c := client.NewClient(trans, client.WithElicitationHandler(alice{}))
	defer c.Close()
	changed := make(chan struct{}, 16)
	acknowledged := make(chan struct{}, 16)
	c.OnNotification(func(notification mcp.JSONRPCNotification) {
		switch notification.Method {
		case "notifications/tools/list_changed":
			changed <- struct{}{}
		case "notifications/subscriptions/acknowledged":
			acknowledged <- struct{}{}
		}
	})
	if err := c.Start(ctx); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	initialize := mcp.InitializeRequest{}
	// Pinned unless MCP_PROTOCOL says otherwise: left to its default (the 2026-07-28 stateless core
	// first), mcp-go v1.2.1 against a stateful go-sdk v1.8.0 server falls back at initialize but then
	// sends tools/list as 2026-07-28, which the server refuses ("unsupported protocol version"),
	// directly as through the sidecar.
	switch version := os.Getenv("MCP_PROTOCOL"); version {
	case "":
		initialize.Params.ProtocolVersion = "2025-11-25"
	case "default":
	default:
		initialize.Params.ProtocolVersion = version
	}
	initialize.Params.ClientInfo = mcp.Implementation{Name: "mcpgo-client", Version: "0.1.0"}
	if _, err := c.Initialize(ctx, initialize); err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	out := map[string]any{"protocol": c.ProtocolVersion()}
	steps := os.Getenv("MCP_STEPS")
	if steps == "" {
		steps = "list,whoami"
	}
	results := map[string]any{}
	for _, step := range strings.Split(steps, ",") {
		switch {
		case step == "list":
			tools, err := c.ListTools(ctx, mcp.ListToolsRequest{})
			if err != nil && os.Getenv("MCP_STEPS") == "" {
				return nil, fmt.Errorf("list tools: %w", err)
			}
			if err != nil {
				results[step] = outcome("", err)
				continue
			}
			names := []string{}
			for _, tool := range tools.Tools {
				names = append(names, tool.Name)
			}
			out["tools"] = names
		case step == "whoami":
			request := mcp.CallToolRequest{}
			request.Params.Name = "whoami"
			request.Params.Arguments = map[string]any{}
			result, err := c.CallTool(ctx, request)
			if err != nil {
				return nil, fmt.Errorf("call whoami: %w", err)
			}
			out["whoami"] = result.StructuredContent
		case strings.HasPrefix(step, "call:"):
			// "call:NAME#2" calls NAME again, its outcome kept apart.
			name, _, _ := strings.Cut(strings.TrimPrefix(step, "call:"), "#")
			results[step] = outcome(call(ctx, c, name))
		case step == "ask":
			results[step] = outcome(call(ctx, c, "ask_name"))
		case step == "listen":
			listenCtx, stop := context.WithCancel(ctx)
			listening := make(chan error, 1)
			go func() { listening <- c.Listen(listenCtx, mcp.SubscriptionFilter{ToolsListChanged: true}) }()
			// The stream is open once the server acknowledged it; add_tool after that is announced on it.
			select {
			case <-acknowledged:
				if _, err := call(ctx, c, "add_tool"); err != nil {
					results[step] = outcome("", err)
					break
				}
				select {
				case <-changed:
					results[step] = outcome("tools list changed", nil)
				case err := <-listening:
					results[step] = outcome("", fmt.Errorf("listen ended: %v", err))
				case <-time.After(5 * time.Second):
					results[step] = outcome("", fmt.Errorf("no tools list change within 5 s"))
				}
			case err := <-listening:
				results[step] = outcome("", fmt.Errorf("listen ended: %v", err))
			case <-time.After(5 * time.Second):
				results[step] = outcome("", fmt.Errorf("the listen stream was not acknowledged within 5 s"))
			}
			stop()
		default:
			return nil, fmt.Errorf("unknown step %q", step)
		}
	}
	if os.Getenv("MCP_STEPS") != "" {
		out["steps"] = results
	}
	return out, nil
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
