package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ferrykit/ferry/statuspage"
)

// HTTPFlags are -http and -http-token-file: the opt-in status page with controls.
type HTTPFlags struct {
	Addr, tokenFile string
}

// AddHTTPFlags registers -http and -http-token-file on fs.
func AddHTTPFlags(fs *flag.FlagSet) *HTTPFlags {
	h := &HTTPFlags{}
	fs.StringVar(&h.Addr, "http", "", "serve a status page with controls, /status (JSON) and /metrics (Prometheus) on this address, e.g. 127.0.0.1:8080 (loopback unless a token is set)")
	fs.StringVar(&h.tokenFile, "http-token-file", "", "bearer token for -http, first line of this file (default $FERRY_HTTP_TOKEN); required for a non-loopback address")
	return h
}

// Enabled reports whether -http was given.
func (h *HTTPFlags) Enabled() bool { return h.Addr != "" }

// Serve starts srv on -http until ctx ends, and tells the operator (on w) where it is. The returned
// wait function blocks until the server has stopped.
func (h *HTTPFlags) Serve(ctx context.Context, srv *statuspage.Server, w io.Writer, tool string) (wait func(), err error) {
	token := os.Getenv("FERRY_HTTP_TOKEN")
	if h.tokenFile != "" {
		b, err := os.ReadFile(h.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("-http-token-file: %w", err)
		}
		token, _, _ = strings.Cut(strings.TrimSpace(string(b)), "\n")
	}
	srv.Token = token
	ln, err := statuspage.Listen(h.Addr, token)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "%s: status page on http://%s/\n", tool, ln.Addr())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, ln)
	}()
	return func() { <-done }, nil
}
