// An MCP client on the official Go SDK (what newer Coder builds may use): initialize, list tools,
// call whoami, with the token from MCP_TOKEN as Authorization: Bearer, all within 10 s (Coder's
// budget for connect and list). Prints {"tools": [...], "whoami": {...}} or exits 1 with the error.
//
// MCP_PROTOCOL pins the protocol version it asks for (unset: the SDK's default, 2026-07-28 first,
// falling back to initialize). MCP_STEPS (comma-separated) runs these instead of list and whoami,
// each step's outcome recorded, and prints {"protocol", "tools", "steps": {step: {text | error}}}:
//
//	list            tools/list
//	call:NAME       tools/call of NAME (arguments from MCP_ARGS_NAME as JSON, default {});
//	                call:NAME#2 calls it again
//	ask             tools/call of ask_name, answering its elicitation with the name "alice"
//	listen          wait for a tools list change announced on the subscriptions/listen stream
//	                (the SDK opens it at connect), after calling add_tool
//
// Usage: MCP_TOKEN=... gosdk-client URL
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type bearer struct{ token string }

func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(req)
}

func textOf(result *mcp.CallToolResult) string {
	parts := []string{}
	for _, content := range result.Content {
		if t, ok := content.(*mcp.TextContent); ok {
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

func call(ctx context.Context, session *mcp.ClientSession, name string) (string, error) {
	args := map[string]any{}
	if raw := os.Getenv("MCP_ARGS_" + strings.ToUpper(name)); raw != "" {
		if err := json.Unmarshal([]byte(raw), &args); err != nil {
			return "", err
		}
	}
	result, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return "", err
	}
	if result.IsError {
		return "", fmt.Errorf("tool error: %s", textOf(result))
	}
	return textOf(result), nil
}

func run(ctx context.Context, url string) (map[string]any, error) {
	httpClient := &http.Client{}
	if token := os.Getenv("MCP_TOKEN"); token != "" {
		httpClient.Transport = bearer{token}
	}
	changed := make(chan struct{}, 16)
	client := mcp.NewClient(&mcp.Implementation{Name: "gosdk-client", Version: "0.1.0"}, &mcp.ClientOptions{
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "alice"}}, nil
		},
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			changed <- struct{}{}
		},
	})
	var options *mcp.ClientSessionOptions
	if version := os.Getenv("MCP_PROTOCOL"); version != "" {
		options = &mcp.ClientSessionOptions{ProtocolVersion: version}
	}
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: httpClient, MaxRetries: -1}, options)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer session.Close()
	out := map[string]any{"protocol": session.InitializeResult().ProtocolVersion}
	steps := os.Getenv("MCP_STEPS")
	if steps == "" {
		steps = "list,whoami"
	}
	results := map[string]any{}
	for _, step := range strings.Split(steps, ",") {
		switch {
		case step == "list":
			tools, err := session.ListTools(ctx, nil)
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
			// The original two-step run: its failure is the run's.
			result, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
			if err != nil {
				return nil, fmt.Errorf("call whoami: %w", err)
			}
			out["whoami"] = result.StructuredContent
		case strings.HasPrefix(step, "call:"):
			// "call:NAME#2" calls NAME again, its outcome kept apart.
			name, _, _ := strings.Cut(strings.TrimPrefix(step, "call:"), "#")
			results[step] = outcome(call(ctx, session, name))
		case step == "ask":
			results[step] = outcome(call(ctx, session, "ask_name"))
		case step == "listen":
			if _, err := call(ctx, session, "add_tool"); err != nil {
				results[step] = outcome("", err)
				continue
			}
			select {
			case <-changed:
				results[step] = outcome("tools list changed", nil)
			case <-time.After(5 * time.Second):
				results[step] = outcome("", fmt.Errorf("no tools list change within 5 s"))
			}
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
