// Package statuspage serves a running migration's status and controls over HTTP: /status (JSON),
// /metrics (Prometheus, when given), and / — a small HTML page for people, with a progress bar per
// table, the lag, the throttle state and buttons for the controls the tool offers (pause, resume,
// cut over, chunk size, abort...). The page needs no external asset; it refreshes itself.
//
// Safe by default: Listen refuses a non-loopback address unless a bearer token is set, and every
// request must then carry it (an "Authorization: Bearer" header, or the cookie set by opening
// /?token=... once). Controls are POSTs that must carry the X-Ferry-Control header, which a page
// on another site cannot send without a CORS preflight this server never answers, so a web page in
// the operator's browser cannot press the buttons. Status never includes a password: it is built
// from the tool's progress, which holds none.
package statuspage

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ferrykit/ferry/verifier"
)

// Table is one table's copy progress.
type Table struct {
	Name          string  `json:"name"`
	RowsCopied    int64   `json:"rows_copied"`
	EstimatedRows int64   `json:"estimated_rows"`
	Percent       float64 `json:"percent"`
	State         string  `json:"state"`
}

// Status is what the page and /status show.
type Status struct {
	Tool          string        `json:"tool"`
	Phase         string        `json:"phase"`
	Elapsed       time.Duration `json:"elapsed_ns"`
	Tables        []Table       `json:"tables"`
	RowsCopied    int64         `json:"rows_copied"`
	EstimatedRows int64         `json:"estimated_rows"`
	Percent       float64       `json:"percent"`
	RowsPerSecond float64       `json:"rows_per_second"`
	ETA           time.Duration `json:"eta_ns"`
	BinlogLag     time.Duration `json:"binlog_lag_ns"`
	StreamSilence time.Duration `json:"stream_silence_ns,omitempty"`
	LastEventTime time.Time     `json:"last_event_time,omitempty"`
	EventsApplied int64         `json:"events_applied"`
	// Paused says why the copy is paused or throttled ("" when it runs).
	Paused    string `json:"paused,omitempty"`
	ChunkSize int    `json:"chunk_size"`
	// Stalls name what is stuck (no rows copied for N s, binlog stream silent).
	Stalls []string `json:"stalls,omitempty"`
	Error  string   `json:"error,omitempty"`
	// Verification is how far the running (or last) verification pass has got; nil before one.
	Verification *verifier.Progress `json:"verification,omitempty"`
	// Controls lists the actions the server accepts, in the page's order.
	Controls []string `json:"controls"`
}

// Action performs one control; arg is the form value (the chunk size), the answer is shown.
type Action func(arg string) (string, error)

// Known actions, in the page's order, and their button labels.
var actionLabels = []struct{ name, label string }{
	{"pause", "Pause"}, {"resume", "Resume"},
	{"throttle", "Throttle"}, {"unthrottle", "Unthrottle"},
	{"postpone", "Postpone cut-over"}, {"unpostpone", "Allow cut-over"}, {"cutover", "Start cut-over"},
	{"chunk-size", "Set chunk size"}, {"abort", "Abort"},
}

// Server serves one tool's status and controls.
type Server struct {
	Status  func() Status
	Actions map[string]Action
	// Metrics, when set, is served at /metrics.
	Metrics http.Handler
	// Token, when set, is required on every request.
	Token string
}

//go:embed page.html
var pageFS embed.FS

var page = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"dur": func(d time.Duration) string {
		if d <= 0 {
			return "0s"
		}
		if d < time.Second {
			return d.Round(time.Millisecond).String()
		}
		return d.Round(time.Second).String()
	},
	"pct": func(f float64) string { return fmt.Sprintf("%.1f", f) },
}).ParseFS(pageFS, "page.html"))

// Listen opens addr for the server. An address that is not loopback is refused without a token:
// the controls can abort a migration.
func Listen(addr, token string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("-http %q: %w", addr, err)
	}
	if !loopback(host) && token == "" {
		return nil, fmt.Errorf("-http %s is not a loopback address: set a token (-http-token-file or $FERRY_HTTP_TOKEN) so that only you can use the controls", addr)
	}
	return net.Listen("tcp", addr)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Serve serves on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	})
	defer stop()
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.status())
	})
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.Metrics)
	}
	mux.HandleFunc("POST /control/{action}", s.control)
	return s.auth(mux)
}

func (s *Server) status() Status {
	st := s.Status()
	st.Controls = nil
	for _, a := range actionLabels {
		if s.Actions[a.name] != nil {
			st.Controls = append(st.Controls, a.name)
		}
	}
	return st
}

const tokenCookie = "ferry_token"

func (s *Server) auth(next http.Handler) http.Handler {
	if s.Token == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		given := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if c, err := r.Cookie(tokenCookie); given == "" && err == nil {
			given = c.Value
		}
		if q := r.URL.Query().Get("token"); q != "" && r.Method == http.MethodGet && r.URL.Path == "/" {
			if subtle.ConstantTimeCompare([]byte(q), []byte(s.Token)) == 1 {
				http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: s.Token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
				http.Redirect(w, r, "/", http.StatusSeeOther) // drop the token from the address bar
				return
			}
		}
		if subtle.ConstantTimeCompare([]byte(given), []byte(s.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "unauthorized: send Authorization: Bearer <token>, or open /?token=<token> once", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

type pageData struct {
	Status
	Buttons []button
}

type button struct{ Name, Label string }

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	d := pageData{Status: s.status()}
	for _, a := range actionLabels {
		if s.Actions[a.name] != nil && a.name != "chunk-size" {
			d.Buttons = append(d.Buttons, button{a.name, a.label})
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src data:")
	if err := page.Execute(w, d); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func (s *Server) control(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Ferry-Control") == "" {
		http.Error(w, "controls need the X-Ferry-Control header (use the page's buttons, or curl -H 'X-Ferry-Control: 1')", http.StatusForbidden)
		return
	}
	act := s.Actions[r.PathValue("action")]
	if act == nil {
		http.Error(w, fmt.Sprintf("unknown control %q", r.PathValue("action")), http.StatusNotFound)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<10)
	msg, err := act(strings.TrimSpace(r.FormValue("value")))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintln(w, msg)
}
