package throttler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// HTTPConfig configures an HTTP throttler.
type HTTPConfig struct {
	// URL is fetched with GET. Required.
	URL string
	// Client sends the request; default a plain http.Client. Its own Timeout, if any, also applies.
	Client *http.Client
	// Timeout bounds one request; default DefaultTimeout.
	Timeout time.Duration
	// CheckInterval is how long an answer is reused; default DefaultCheckInterval.
	CheckInterval time.Duration
}

// HTTP asks a throttling service (gh-ost's --throttle-http): work goes on only while a GET of URL
// answers 200 OK.
//
// Guarantees: any other status, a refused connection, a timeout or any other transport error
// throttles (fails closed), with the status or error in the reason or detail; the first bytes of a
// non-200 body are reported in Detail. The URL is fetched at most once per CheckInterval however
// many goroutines call Check, and the response body is always drained and closed.
type HTTP struct {
	cfg   HTTPConfig
	cache *cached
}

// NewHTTP returns an HTTP throttler.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	if cfg.URL == "" {
		return nil, errors.New("throttler: NewHTTP needs a URL")
	}
	if _, err := http.NewRequest(http.MethodGet, cfg.URL, nil); err != nil {
		return nil, fmt.Errorf("throttler: NewHTTP: %w", err)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	cfg.Timeout = orDefault(cfg.Timeout, DefaultTimeout)
	return &HTTP{cfg: cfg, cache: newCached(cfg.CheckInterval)}, nil
}

// Check implements Throttler.
func (h *HTTP) Check(ctx context.Context) (Status, error) {
	return h.cache.check(ctx, h.refresh)
}

func (h *HTTP) refresh(ctx context.Context) (Status, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.cfg.URL, nil)
	if err != nil {
		return Status{}, err // NewHTTP already parsed the URL; not reached
	}
	resp, err := h.cfg.Client.Do(req)
	if err != nil {
		return Status{Throttled: true, Reason: "http check " + h.cfg.URL + " failed", Detail: err.Error()}, nil
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusOK {
		return Status{}, nil
	}
	st := Status{Throttled: true, Reason: "http check " + h.cfg.URL + " answered " + resp.Status}
	if body := strings.Join(strings.Fields(string(head)), " "); body != "" {
		st.Detail = body
	}
	return st, nil
}
