package throttler_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrykit/ferry/throttler"
)

func TestHTTPPausesAndResumesCopy(t *testing.T) {
	var code atomic.Int32
	code.Store(http.StatusOK)
	var slow atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		w.WriteHeader(int(code.Load()))
		w.Write([]byte("replicas\n lagging"))
	}))
	defer srv.Close()
	h, err := throttler.NewHTTP(throttler.HTTPConfig{URL: srv.URL, CheckInterval: 5 * time.Millisecond, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c := startCopy(t, h, 0, nil)
	code.Store(http.StatusServiceUnavailable)
	ch := c.expectPaused(t, "http check "+srv.URL+" answered 503 Service Unavailable")
	if ch.st.Detail != "replicas lagging" {
		t.Fatalf("detail %q, want the body", ch.st.Detail)
	}
	code.Store(http.StatusOK)
	c.expectResumed(t)
	code.Store(http.StatusNoContent) // only 200 lets work go on
	c.expectPaused(t, "answered 204")
	code.Store(http.StatusOK)
	c.expectResumed(t)
	slow.Store(true) // a timeout throttles
	ch = c.expectPaused(t, "http check "+srv.URL+" failed")
	if !strings.Contains(ch.st.Detail, "deadline exceeded") && !strings.Contains(ch.st.Detail, "Timeout") {
		t.Fatalf("detail %q, want a timeout", ch.st.Detail)
	}
	slow.Store(false)
	c.expectResumed(t)
}

func TestHTTPRefusedConnectionThrottles(t *testing.T) {
	url := "http://" + closedAddr(t) + "/throttle"
	h, err := throttler.NewHTTP(throttler.HTTPConfig{URL: url, CheckInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	st := mustCheck(t, h)
	if !st.Throttled || st.Reason != "http check "+url+" failed" || !strings.Contains(st.Detail, "refused") {
		t.Fatalf("status %+v, want throttled with connection refused", st)
	}
	if _, err := throttler.NewHTTP(throttler.HTTPConfig{URL: "://bad"}); err == nil {
		t.Fatal("NewHTTP accepted a bad URL")
	}
}

// Many workers calling Check at once cost one request per CheckInterval.
func TestHTTPCachesReadingsAcrossConcurrentCallers(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		time.Sleep(20 * time.Millisecond) // callers pile up behind the refresh
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	h, err := throttler.NewHTTP(throttler.HTTPConfig{URL: srv.URL, CheckInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var throttled atomic.Int32
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				st, err := h.Check(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				if st.Throttled {
					throttled.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := requests.Load(); n != 1 {
		t.Fatalf("%d requests for 400 concurrent checks within one interval, want 1", n)
	}
	if n := throttled.Load(); n != 400 {
		t.Fatalf("%d of 400 checks throttled, want all", n)
	}
	// A caller whose context ends while waiting for the refresh gets its context's error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Check(ctx); err == nil {
		t.Fatal("Check with a cancelled context succeeded")
	}
}
