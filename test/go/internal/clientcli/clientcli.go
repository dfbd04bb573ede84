// Package clientcli is what the Go test clients (cmd/gosdk-client, cmd/mcpgo-client) share: the
// environment they read, the steps they run and what they print. Each client brings its SDK's
// connect, list, call and listen as a Session.
//
// MCP_TOKEN is sent as Authorization: Bearer. Without MCP_STEPS a client lists the tools and calls
// whoami, either failure being the run's, and prints {"protocol", "tools": [...], "whoami": {...}}.
// MCP_STEPS (comma-separated) runs these instead, each step's outcome recorded, and prints
// {"protocol", "tools", "steps": {step: {text | error}}}:
//
//	list            tools/list
//	call:NAME       tools/call of NAME (arguments from MCP_ARGS_NAME as JSON, default {});
//	                call:NAME#2 calls it again
//	ask             tools/call of ask_name, answering its elicitation with the name "alice"
//	listen          wait for a tools list change announced after calling add_tool (see Session.Listen)
//
// All within 10 s (Coder's budget for connect and list); on an error it exits 1 with the error.
package clientcli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// Result is a tools/call result as the steps read it.
type Result struct {
	Text       string
	Structured any
	IsError    bool
}

// Session is one SDK's connected client.
type Session interface {
	Protocol() string
	ListTools(ctx context.Context) ([]string, error)
	CallTool(ctx context.Context, name string, args map[string]any) (Result, error)
	// Listen runs add (the add_tool call) and waits for the tools list change it announces.
	Listen(ctx context.Context, add func() error) error
	Close() error
}

// Connect opens a Session to url, with the token (may be empty) as Authorization: Bearer.
type Connect func(ctx context.Context, url, token string) (Session, error)

// Main runs the client named by connect against os.Args[1] and prints its outcome.
func Main(connect Connect) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := run(ctx, connect, os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

// outcome is a step's recorded outcome: {"error"} or {"text"}.
func outcome(text string, err error) map[string]any {
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	return map[string]any{"text": text}
}

// call calls the tool name with its arguments from MCP_ARGS_NAME; a tool error is an error.
func call(ctx context.Context, session Session, name string) (string, error) {
	args := map[string]any{}
	if raw := os.Getenv("MCP_ARGS_" + strings.ToUpper(name)); raw != "" {
		if err := json.Unmarshal([]byte(raw), &args); err != nil {
			return "", err
		}
	}
	result, err := session.CallTool(ctx, name, args)
	if err != nil {
		return "", err
	}
	if result.IsError {
		return "", fmt.Errorf("tool error: %s", result.Text)
	}
	return result.Text, nil
}

func run(ctx context.Context, connect Connect, url string) (map[string]any, error) {
	session, err := connect(ctx, url, os.Getenv("MCP_TOKEN"))
	if err != nil {
		return nil, err
	}
	defer session.Close()
	out := map[string]any{"protocol": session.Protocol()}
	steps := os.Getenv("MCP_STEPS")
	if steps == "" {
		steps = "list,whoami"
	}
	results := map[string]any{}
	for _, step := range strings.Split(steps, ",") {
		switch {
		case step == "list":
			names, err := session.ListTools(ctx)
			if err != nil && os.Getenv("MCP_STEPS") == "" {
				return nil, fmt.Errorf("list tools: %w", err)
			}
			if err != nil {
				results[step] = outcome("", err)
				continue
			}
			out["tools"] = names
		case step == "whoami":
			// The original two-step run: its failure is the run's.
			result, err := session.CallTool(ctx, "whoami", map[string]any{})
			if err != nil {
				return nil, fmt.Errorf("call whoami: %w", err)
			}
			out["whoami"] = result.Structured
		case strings.HasPrefix(step, "call:"):
			// "call:NAME#2" calls NAME again, its outcome kept apart.
			name, _, _ := strings.Cut(strings.TrimPrefix(step, "call:"), "#")
			results[step] = outcome(call(ctx, session, name))
		case step == "ask":
			results[step] = outcome(call(ctx, session, "ask_name"))
		case step == "listen":
			err := session.Listen(ctx, func() error {
				_, err := call(ctx, session, "add_tool")
				return err
			})
			results[step] = outcome("tools list changed", err)
		default:
			return nil, fmt.Errorf("unknown step %q", step)
		}
	}
	if os.Getenv("MCP_STEPS") != "" {
		out["steps"] = results
	}
	return out, nil
}
