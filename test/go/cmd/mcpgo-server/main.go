// An MCP server on github.com/mark3labs/mcp-go (v1.2.1, pinned in go.mod), serving stateful
// Streamable HTTP on 127.0.0.1, the way a Go MCP server written with that library is deployed:
// typed tool handlers (arguments bound into structs by encoding/json), a resource template and a
// prompt. Every call it runs is printed as one line, `ran {json}`, with what the handler received,
// so a test can compare what the server executed with what the sidecar's audit line names.
//
// Usage: mcpgo-server [address]   (default 127.0.0.1:0; prints "listening http://HOST:PORT/mcp")
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

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

var out sync.Mutex

// ran prints one executed call; stdout is line-buffered by the lock, never interleaved.
func ran(fields map[string]any) {
	fields["server"] = "mcp-go"
	line, _ := json.Marshal(fields)
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(os.Stdout, "ran %s\n", line)
}

type userKey struct{}

type queryIn struct {
	SQL string `json:"sql"`
}

type tableIn struct {
	Table string `json:"table"`
}

type echoIn struct {
	Text string `json:"text"`
}

type sleepIn struct {
	Milliseconds int `json:"ms"`
}

func newServer() *server.MCPServer {
	s := server.NewMCPServer("mcpgo-test-server", "0.1.0",
		server.WithToolCapabilities(false),
		server.WithResourceCapabilities(true, false),
		server.WithPromptCapabilities(false),
	)
	readOnly := mcp.WithReadOnlyHintAnnotation(true)

	s.AddTool(mcp.NewTool("whoami", mcp.WithDescription("the X-Verified-User this call arrived with"), readOnly),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			user, _ := ctx.Value(userKey{}).(string)
			ran(map[string]any{"method": "tools/call", "tool": req.Params.Name, "arguments": req.GetArguments(), "user": user})
			return mcp.NewToolResultText(user), nil
		})
	s.AddTool(mcp.NewTool("query", mcp.WithDescription("pretends to run a read-only SQL query"), mcp.WithString("sql"), readOnly),
		mcp.NewTypedToolHandler(func(_ context.Context, req mcp.CallToolRequest, in queryIn) (*mcp.CallToolResult, error) {
			ran(map[string]any{"method": "tools/call", "tool": req.Params.Name, "arguments": in})
			return mcp.NewToolResultText("rows for: " + in.SQL), nil
		}))
	s.AddTool(mcp.NewTool("drop_table", mcp.WithDescription("pretends to drop a table"), mcp.WithString("table"), mcp.WithDestructiveHintAnnotation(true)),
		mcp.NewTypedToolHandler(func(_ context.Context, req mcp.CallToolRequest, in tableIn) (*mcp.CallToolResult, error) {
			ran(map[string]any{"method": "tools/call", "tool": req.Params.Name, "arguments": in})
			return mcp.NewToolResultText("dropped " + in.Table), nil
		}))
	s.AddTool(mcp.NewTool("echo", mcp.WithDescription("returns its text"), mcp.WithString("text"), readOnly),
		mcp.NewTypedToolHandler(func(_ context.Context, req mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, error) {
			ran(map[string]any{"method": "tools/call", "tool": req.Params.Name, "arguments": in})
			return mcp.NewToolResultText(in.Text), nil
		}))
	s.AddTool(mcp.NewTool("sleep", mcp.WithDescription("answers after ms milliseconds"), mcp.WithNumber("ms"), readOnly),
		mcp.NewTypedToolHandler(func(ctx context.Context, req mcp.CallToolRequest, in sleepIn) (*mcp.CallToolResult, error) {
			ran(map[string]any{"method": "tools/call", "tool": req.Params.Name, "arguments": in})
			select {
			case <-time.After(time.Duration(in.Milliseconds) * time.Millisecond):
				return mcp.NewToolResultText("slept"), nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}))

	// A file server's template: the path decoded and cleaned as a file server opens it, so dot
	// segments (also percent-encoded) resolve.
	s.AddResourceTemplate(mcp.NewResourceTemplate("file:///public/{+path}", "public files"),
		func(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			resolved := req.Params.URI
			if u, err := url.Parse(req.Params.URI); err == nil {
				resolved = "file://" + path.Clean(u.Path)
			}
			ran(map[string]any{"method": "resources/read", "uri": req.Params.URI, "resolved": resolved})
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "text/plain", Text: "contents of " + resolved}}, nil
		})

	s.AddPrompt(mcp.NewPrompt("greet", mcp.WithPromptDescription("greets someone"), mcp.WithArgument("who")),
		func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			ran(map[string]any{"method": "prompts/get", "prompt": req.Params.Name, "arguments": req.Params.Arguments})
			return mcp.NewGetPromptResult("greeting", []mcp.PromptMessage{
				mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("hello "+req.Params.Arguments["who"])),
			}), nil
		})
	return s
}

func main() {
	address := "127.0.0.1:0"
	if len(os.Args) > 1 {
		address = os.Args[1]
	}
	handler := server.NewStreamableHTTPServer(newServer(),
		server.WithStateful(true),
		server.WithHTTPContextFunc(func(ctx context.Context, r *http.Request) context.Context {
			return context.WithValue(ctx, userKey{}, r.Header.Get("X-Verified-User"))
		}),
	)
	mux := http.NewServeMux()
	mux.Handle("/mcp", handler)
	listener, err := net.Listen("tcp", address)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening http://%s/mcp\n", strings.Replace(listener.Addr().String(), "[::]", "127.0.0.1", 1))
	log.Fatal(http.Serve(listener, mux))
}
