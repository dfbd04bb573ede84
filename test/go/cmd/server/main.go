// An MCP server built on the official Go SDK (the SDK Go MCP servers such as datastore-mcp use),
// serving Streamable HTTP on 127.0.0.1. Its tools report what reached them, so the tests can see
// the sidecar's identity headers, progress streams and tool annotations from the Go side. Every
// tool call, resource read and prompt it runs is printed as one line, `ran {json}`, with what the
// handler received, so a test can compare what the server executed with the sidecar's audit line.
//
// Usage: server [address]   (default 127.0.0.1:0; prints "listening http://HOST:PORT/mcp")
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type whoamiOut struct {
	User          string `json:"user"`
	Subject       string `json:"subject"`
	Email         string `json:"email"`
	Groups        string `json:"groups"`
	Authorization bool   `json:"authorization"`
}

type progressIn struct {
	Steps int `json:"steps" jsonschema:"how many progress notifications precede the result (default 3)"`
}

type echoIn struct {
	Text string `json:"text"`
}

type queryIn struct {
	SQL string `json:"sql"`
}

type tableIn struct {
	Table string `json:"table"`
}

type sleepIn struct {
	Milliseconds int `json:"ms" jsonschema:"how long the call takes; ends early when the request is cancelled"`
}

var out sync.Mutex

// ran prints one executed call as a line of its own.
func ran(fields map[string]any) {
	fields["server"] = "go-sdk"
	line, _ := json.Marshal(fields)
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(os.Stdout, "ran %s\n", line)
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

func header(req *mcp.CallToolRequest, name string) string {
	if req.Extra == nil || req.Extra.Header == nil {
		return ""
	}
	return req.Extra.Header.Get(name)
}

func newServer() *mcp.Server {
	server := mcp.NewServer(&mcp.Implementation{Name: "go-test-server", Version: "0.1.0"}, nil)
	readOnly := &mcp.ToolAnnotations{ReadOnlyHint: true}
	destructive := true

	mcp.AddTool(server, &mcp.Tool{Name: "whoami", Description: "the X-Verified-* headers this call arrived with", Annotations: readOnly},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, whoamiOut, error) {
			out := whoamiOut{
				User:          header(req, "X-Verified-User"),
				Subject:       header(req, "X-Verified-Subject"),
				Email:         header(req, "X-Verified-Email"),
				Groups:        header(req, "X-Verified-Groups"),
				Authorization: header(req, "Authorization") != "",
			}
			return text(out.User), out, nil
		})

	mcp.AddTool(server, &mcp.Tool{Name: "progress", Description: "sends progress notifications, then its result", Annotations: readOnly},
		func(ctx context.Context, req *mcp.CallToolRequest, in progressIn) (*mcp.CallToolResult, any, error) {
			steps := in.Steps
			if steps <= 0 {
				steps = 3
			}
			if token := req.Params.GetProgressToken(); token != nil {
				for i := 1; i <= steps; i++ {
					params := &mcp.ProgressNotificationParams{ProgressToken: token, Progress: float64(i), Total: float64(steps), Message: fmt.Sprintf("step %d", i)}
					if err := req.Session.NotifyProgress(ctx, params); err != nil {
						return nil, nil, err
					}
				}
			}
			return text(fmt.Sprintf("done after %d steps", steps)), nil, nil
		})

	mcp.AddTool(server, &mcp.Tool{Name: "echo", Description: "returns its text", Annotations: readOnly},
		func(_ context.Context, req *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
			ran(map[string]any{"method": "tools/call", "tool": req.Params.Name, "arguments": in})
			return text(in.Text), nil, nil
		})

	mcp.AddTool(server, &mcp.Tool{Name: "query", Description: "pretends to run a read-only SQL query", Annotations: readOnly},
		func(_ context.Context, req *mcp.CallToolRequest, in queryIn) (*mcp.CallToolResult, any, error) {
			ran(map[string]any{"method": "tools/call", "tool": req.Params.Name, "arguments": in})
			return text("rows for: " + in.SQL), nil, nil
		})

	mcp.AddTool(server, &mcp.Tool{Name: "drop_table", Description: "pretends to drop a table", Annotations: &mcp.ToolAnnotations{DestructiveHint: &destructive}},
		func(_ context.Context, req *mcp.CallToolRequest, in tableIn) (*mcp.CallToolResult, any, error) {
			ran(map[string]any{"method": "tools/call", "tool": req.Params.Name, "arguments": in})
			return text("dropped " + in.Table), nil, nil
		})

	mcp.AddTool(server, &mcp.Tool{Name: "sleep", Description: "answers after ms milliseconds", Annotations: readOnly},
		func(ctx context.Context, req *mcp.CallToolRequest, in sleepIn) (*mcp.CallToolResult, any, error) {
			ran(map[string]any{"method": "tools/call", "tool": req.Params.Name, "arguments": in})
			select {
			case <-time.After(time.Duration(in.Milliseconds) * time.Millisecond):
				return text("slept"), nil, nil
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
		})

	// A file server's template: the path decoded and cleaned as a file server opens it, so dot
	// segments (also percent-encoded) resolve.
	server.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: "file:///public/{+path}", Name: "public files", MIMEType: "text/plain"},
		func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			resolved := req.Params.URI
			if u, err := url.Parse(req.Params.URI); err == nil {
				resolved = "file://" + path.Clean(u.Path)
			}
			ran(map[string]any{"method": "resources/read", "uri": req.Params.URI, "resolved": resolved})
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: "contents of " + resolved}}}, nil
		})

	server.AddPrompt(&mcp.Prompt{Name: "greet", Description: "greets someone", Arguments: []*mcp.PromptArgument{{Name: "who"}}},
		func(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			ran(map[string]any{"method": "prompts/get", "prompt": req.Params.Name, "arguments": req.Params.Arguments})
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "hello " + req.Params.Arguments["who"]}}}}, nil
		})
	return server
}

func main() {
	address := "127.0.0.1:0"
	if len(os.Args) > 1 {
		address = os.Args[1]
	}
	server := newServer()
	// The SDK's defaults, as a Go MCP server deploys them (its loopback Host check included).
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	mux := http.NewServeMux()
	mux.Handle("/mcp", handler)
	listener, err := net.Listen("tcp", address)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening http://%s/mcp\n", strings.Replace(listener.Addr().String(), "[::]", "127.0.0.1", 1))
	log.Fatal(http.Serve(listener, mux))
}
