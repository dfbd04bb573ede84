// An MCP client on the official Go SDK (what newer Coder builds may use): initialize, list tools,
// call whoami, with the token from MCP_TOKEN as Authorization: Bearer, all within 10 s (Coder's
// budget for connect and list). Prints {"tools": [...], "whoami": {...}} or exits 1 with the error.
// MCP_STEPS and what it prints: see internal/clientcli.
//
// MCP_PROTOCOL pins the protocol version it asks for (unset: the SDK's default, 2026-07-28 first,
// falling back to initialize). Its listen step waits for a tools list change announced on the
// subscriptions/listen stream (the SDK opens it at connect), after calling add_tool.
//
// Usage: MCP_TOKEN=... gosdk-client URL
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-auth-sidecar/test/go/internal/clientcli"
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

type session struct {
	*mcp.ClientSession
	changed chan struct{}
}

func (s session) Protocol() string { return s.InitializeResult().ProtocolVersion }

func (s session) ListTools(ctx context.Context) ([]string, error) {
	tools, err := s.ClientSession.ListTools(ctx, nil)
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	return names, nil
}

func (s session) CallTool(ctx context.Context, name string, args map[string]any) (clientcli.Result, error) {
	result, err := s.ClientSession.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return clientcli.Result{}, err
	}
	return clientcli.Result{Text: textOf(result), Structured: result.StructuredContent, IsError: result.IsError}, nil
}

func (s session) Listen(ctx context.Context, add func() error) error {
	if err := add(); err != nil {
		return err
	}
	select {
	case <-s.changed:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("no tools list change within 5 s")
	}
}

func connect(ctx context.Context, url, token string) (clientcli.Session, error) {
	httpClient := &http.Client{}
	if token != "" {
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
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: httpClient, MaxRetries: -1}, options)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return session{cs, changed}, nil
}

func main() { clientcli.Main(connect) }
