// An MCP client on github.com/mark3labs/mcp-go, the way Coder's chat daemon connects
// (client/transport Streamable HTTP, the user's token as Authorization: Bearer): initialize, list
// tools, call whoami, within 10 s (Coder's budget for connect and list). Prints
// {"tools": [...], "whoami": {...}} or exits 1 with the error. MCP_STEPS and what it prints: see
// internal/clientcli.
//
// MCP_PROTOCOL is the protocol version it asks for: unset, 2025-11-25 (see connect); "default", the
// library's own choice (2026-07-28 first, by server/discover, falling back to initialize). Its
// listen step opens subscriptions/listen for tool list changes, then calls add_tool, then waits
// for the change.
//
// Usage: MCP_TOKEN=... mcpgo-client URL
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcp-auth-sidecar/test/go/internal/clientcli"
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

type session struct {
	*client.Client
	changed, acknowledged chan struct{}
}

func (s session) Protocol() string { return s.ProtocolVersion() }

func (s session) ListTools(ctx context.Context) ([]string, error) {
	tools, err := s.Client.ListTools(ctx, mcp.ListToolsRequest{})
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
	request := mcp.CallToolRequest{}
	request.Params.Name = name
	request.Params.Arguments = args
	result, err := s.Client.CallTool(ctx, request)
	if err != nil {
		return clientcli.Result{}, err
	}
	return clientcli.Result{Text: textOf(result), Structured: result.StructuredContent, IsError: result.IsError}, nil
}

func (s session) Listen(ctx context.Context, add func() error) error {
	listenCtx, stop := context.WithCancel(ctx)
	defer stop()
	listening := make(chan error, 1)
	go func() { listening <- s.Client.Listen(listenCtx, mcp.SubscriptionFilter{ToolsListChanged: true}) }()
	// The stream is open once the server acknowledged it; add_tool after that is announced on it.
	select {
	case <-s.acknowledged:
	case err := <-listening:
		return fmt.Errorf("listen ended: %v", err)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("the listen stream was not acknowledged within 5 s")
	}
	if err := add(); err != nil {
		return err
	}
	select {
	case <-s.changed:
		return nil
	case err := <-listening:
		return fmt.Errorf("listen ended: %v", err)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("no tools list change within 5 s")
	}
}

func connect(ctx context.Context, url, token string) (clientcli.Session, error) {
	headers := map[string]string{}
	if token != "" {
		headers["Authorization"] = "Bearer " + token
	}
	trans, err := transport.NewStreamableHTTP(url, transport.WithHTTPHeaders(headers))
	if err != nil {
		return nil, err
	}
	c := client.NewClient(trans, client.WithElicitationHandler(alice{}))
	s := session{c, make(chan struct{}, 16), make(chan struct{}, 16)}
	c.OnNotification(func(notification mcp.JSONRPCNotification) {
		switch notification.Method {
		case "notifications/tools/list_changed":
			s.changed <- struct{}{}
		case "notifications/subscriptions/acknowledged":
			s.acknowledged <- struct{}{}
		}
	})
	if err := c.Start(ctx); err != nil {
		c.Close()
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
		c.Close()
		return nil, fmt.Errorf("initialize: %w", err)
	}
	return s, nil
}

func main() { clientcli.Main(connect) }
