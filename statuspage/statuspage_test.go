package statuspage

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestListenRefusesAnOpenAddressWithoutAToken(t *testing.T) {
	if _, err := Listen("0.0.0.0:0", ""); err == nil || !strings.Contains(err.Error(), "set a token") {
		t.Errorf("0.0.0.0 without a token: %v", err)
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0"} {
		ln, err := Listen(addr, "")
		if err != nil {
			t.Errorf("%s: %v", addr, err)
			continue
		}
		ln.Close()
	}
	ln, err := Listen("0.0.0.0:0", "secret")
	if err != nil {
		t.Fatalf("0.0.0.0 with a token: %v", err)
	}
	ln.Close()
}

func TestTokenAndControlHeader(t *testing.T) {
	paused := false
	s := &Server{
		Status: func() Status {
			return Status{Tool: "x", Phase: "copying", Tables: []Table{{Name: "db.t", Percent: 40}}}
		},
		Actions: map[string]Action{"pause": func(string) (string, error) { paused = true; return "paused", nil }},
		Token:   "secret",
	}
	h := s.Handler()
	do := func(method, path string, hdr map[string]string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	auth := map[string]string{"Authorization": "Bearer secret"}
	if w := do("GET", "/status", nil); w.Code != http.StatusUnauthorized {
		t.Errorf("/status without the token: %d", w.Code)
	}
	if w := do("GET", "/status", map[string]string{"Authorization": "Bearer wrong"}); w.Code != http.StatusUnauthorized {
		t.Errorf("/status with a wrong token: %d", w.Code)
	}
	w := do("GET", "/status", auth)
	var st Status
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || st.Phase != "copying" || len(st.Controls) != 1 {
		t.Errorf("/status: %d %s", w.Code, w.Body)
	}
	if w := do("POST", "/control/pause", auth); w.Code != http.StatusForbidden || paused {
		t.Errorf("a control without X-Ferry-Control (a cross-site form could send it): %d, paused %v", w.Code, paused)
	}
	auth["X-Ferry-Control"] = "1"
	if w := do("POST", "/control/pause", auth); w.Code != http.StatusOK || !paused {
		t.Errorf("pause: %d %s", w.Code, w.Body)
	}
	if w := do("POST", "/control/abort", auth); w.Code != http.StatusNotFound {
		t.Errorf("an action the tool does not offer: %d", w.Code)
	}
	w = do("GET", "/?token=secret", nil)
	if w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Set-Cookie"), "HttpOnly") {
		t.Errorf("/?token=: %d, cookie %q", w.Code, w.Header().Get("Set-Cookie"))
	}
	page := do("GET", "/", map[string]string{"Cookie": "ferry_token=secret"})
	if page.Code != http.StatusOK || !strings.Contains(page.Body.String(), `id="btn-pause"`) || strings.Contains(page.Body.String(), "btn-abort") {
		t.Errorf("page with the cookie: %d", page.Code)
	}
}
