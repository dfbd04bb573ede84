// An MCP server built on the official Go SDK (the SDK Go MCP servers such as datastore-mcp use),
// serving Streamable HTTP on 127.0.0.1. Its tools report what reached them, so the tests can see
// the sidecar's identity headers, progress streams and tool annotations from the Go side. Every
// tool call, resource read and prompt it runs is printed as one line, `ran {json}`, with what the
// handler received, so a test can compare what the server executed with the sidecar's audit line.
//
// Usage: server [address] [stateless]   (default 127.0.0.1:0; prints "listening http://HOST:PORT/mcp")
//
// With "stateless" it serves the SDK's stateless mode (MCP 2026-07-28 beside the 2025 revisions,
// no sessions) and adds what that revision brings: ask_name (a multi round-trip request asking
// for the caller's name by elicitation), add_tool (changes the tool list: a
// notifications/tools/list_changed on subscriptions/listen streams), region_query (an argument
// mirrored into Mcp-Param-Region) and two resources, docs://alpha/readme and docs://bravo/plan.
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
	"sync/atomic"
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

type regionIn struct {
	Region string `json:"region"`
	SQL    string `json:"sql"`
}

// addStatelessTools adds the tools and resources the 2026-07-28 tests use.
func addStatelessTools(server *mcp.Server) {
	readOnly := &mcp.ToolAnnotations{ReadOnlyHint: true}
	mcp.AddTool(server, &mcp.Tool{Name: "ask_name", Description: "asks the caller's name (elicitation), then greets", Annotations: readOnly},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			if answer, ok := req.Params.InputResponses["user_name"].(*mcp.ElicitResult); ok && answer != nil && answer.Action == "accept" {
				if name, _ := answer.Content["name"].(string); name != "" {
					return text("Hello, " + name + "!"), nil, nil
				}
			}
			schema := json.RawMessage(`{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}`)
			return &mcp.CallToolResult{InputRequests: mcp.InputRequestMap{
				"user_name": &mcp.ElicitParams{Message: "What is your name?", RequestedSchema: schema},
			}}, nil, nil
		})

	var added atomic.Int64
	mcp.AddTool(server, &mcp.Tool{Name: "add_tool", Description: "adds a tool, so that the tool list changes", Annotations: readOnly},
		func(_ context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			name := fmt.Sprintf("added_%d", added.Add(1))
			mcp.AddTool(server, &mcp.Tool{Name: name, Description: "added by add_tool"},
				func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
					return text(name), nil, nil
				})
			return text("added " + name), nil, nil
		})

	mcp.AddTool(server, &mcp.Tool{
		Name:        "region_query",
		Description: "pretends to run a query in a region (the region travels in Mcp-Param-Region too)",
		Annotations: readOnly,
		InputSchema: json.RawMessage(`{"type":"object","properties":{
			"region":{"type":"string","x-mcp-header":"Region"},
			"sql":{"type":"string"}}}`),
	}, func(_ context.Context, req *mcp.CallToolRequest, in regionIn) (*mcp.CallToolResult, any, error) {
		return text(fmt.Sprintf("rows in %s (Mcp-Param-Region: %s) for: %s", in.Region, header(req, "Mcp-Param-Region"), in.SQL)), nil, nil
	})

	for _, r := range []struct{ uri, text string }{{"docs://alpha/readme", "alpha's readme"}, {"docs://bravo/plan", "bravo's plan"}} {
		content := r.text
		server.AddResource(&mcp.Resource{URI: r.uri, Name: r.uri, MIMEType: "text/plain"},
			func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
				return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: content}}}, nil
			})
	}
}

func main() {
	address := "127.0.0.1:0"
	if len(os.Args) > 1 {
		address = os.Args[1]
	}
	stateless := len(os.Args) > 2 && os.Args[2] == "stateless"
	server := newServer()
	var options *mcp.StreamableHTTPOptions
	if stateless {
		addStatelessTools(server)
		options = &mcp.StreamableHTTPOptions{Stateless: true}
	}
	// The SDK's defaults, as a Go MCP server deploys them (its loopback Host check included).
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, options)
	mux := http.NewServeMux()
	mux.Handle("/mcp", handler)
	listener, err := net.Listen("tcp", address)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening http://%s/mcp\n", strings.Replace(listener.Addr().String(), "[::]", "127.0.0.1", 1))
	log.Fatal(http.Serve(listener, mux))
}
