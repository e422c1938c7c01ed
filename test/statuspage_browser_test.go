package test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser starts headless Chromium with a fresh profile and no network chatter of its own.
func browser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	var bin string
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Fatal("chromium is not installed; run `make deps` (apt-get install chromium)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1100, 700),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	return bctx
}

type webStatus struct {
	Phase      string `json:"phase"`
	RowsCopied int64  `json:"rows_copied"`
	Paused     string `json:"paused"`
	ChunkSize  int    `json:"chunk_size"`
}

func getStatus(t *testing.T, base string) webStatus {
	t.Helper()
	r, err := http.Get(base + "status")
	must(t, err)
	defer r.Body.Close()
	var st webStatus
	must(t, json.NewDecoder(r.Body).Decode(&st))
	return st
}

// copydb -http: the page shows the running copy's table with its progress bar; its Pause button
// stops the copy and the page says why; the chunk size and Resume buttons finish it.
func TestCopydbStatusPageInABrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := rsBuildCopydb(t, dir)
	must(t, source.Exec(ctx, "DROP DATABASE IF EXISTS web", "CREATE DATABASE web", "USE web",
		"CREATE TABLE web.orders (id INT PRIMARY KEY, v VARCHAR(20))",
		"INSERT INTO web.orders SELECT seq, 'row' FROM seq_1_to_20000"))
	must(t, target.Exec(ctx, "DROP DATABASE IF EXISTS web"))
	r := rsStartCopydb(t, bin, "-source-port", strconv.Itoa(source.Port), "-target-port", strconv.Itoa(target.Port),
		"-databases", "web", "-create-tables", "-cutover", "none", "-verify", "checksum",
		"-batch-size", "2", "-workers", "1", "-progress", "1h", "-log-level", "warn", "-http", "127.0.0.1:0")
	addr := regexp.MustCompile(`status page on (http://\S+/)`)
	rsWaitFor(t, r, time.Minute, "the status page address", func() bool { return addr.MatchString(r.output()) })
	base := addr.FindStringSubmatch(r.output())[1]
	rsWaitFor(t, r, time.Minute, "rows being copied", func() bool { return getStatus(t, base).RowsCopied > 0 })

	b := browser(t, ctx)
	must(t, chromedp.Do(b, chromedp.Navigate(base), chromedp.WaitVisible(`#tables tbody tr`)))
	tableText, err := chromedp.Run(b, chromedp.Text(`#tables tbody`))
	must(t, err)
	bar, err := chromedp.Run(b, chromedp.AttributeValue(`#tables tbody .bar`, "aria-valuenow"))
	must(t, err)
	if !strings.Contains(tableText, "web.orders") || !strings.Contains(tableText, "copying") {
		t.Errorf("the table row: %q", tableText)
	}
	if !bar.Exists || bar.Value == "" || bar.Value == "0.0" {
		t.Errorf("progress bar value %+v, want the copied share", bar)
	}
	must(t, chromedp.Do(b, chromedp.WaitVisible(`#btn-pause`), chromedp.Click(`#btn-pause`), chromedp.WaitVisible(`#paused`)))
	paused, err := chromedp.Run(b, chromedp.Text(`#paused`))
	must(t, err)
	if !strings.Contains(paused, "paused from the status page") {
		t.Errorf("the page says %q, want why the copy is paused", paused)
	}
	time.Sleep(300 * time.Millisecond) // the batch in progress
	before := getStatus(t, base)
	time.Sleep(time.Second)
	after := getStatus(t, base)
	if after.RowsCopied != before.RowsCopied || after.Paused == "" {
		t.Fatalf("paused: %d rows, then %d (paused %q)", before.RowsCopied, after.RowsCopied, after.Paused)
	}
	png, err := chromedp.Run(b, chromedp.FullScreenshot(100)) // quality 100: PNG
	must(t, err)
	shot := filepath.Join(t.TempDir(), "status-page.png")
	must(t, os.WriteFile(shot, png, 0o600))
	t.Logf("screenshot: %s (%d bytes); paused at %d rows", shot, len(png), after.RowsCopied)
	if out := os.Getenv("FERRY_SCREENSHOT"); out != "" {
		must(t, os.WriteFile(out, png, 0o644))
	}

	must(t, chromedp.Do(b,
		chromedp.WaitVisible(`#chunk-size`),
		chromedp.SetValue(`#chunk-size`, "5000"),
		chromedp.Click(`#btn-chunk-size`),
	))
	waitFor(t, ctx, "the new chunk size", func() bool { return getStatus(t, base).ChunkSize == 5000 })
	must(t, chromedp.Do(b, chromedp.WaitVisible(`#btn-resume`), chromedp.Click(`#btn-resume`)))
	select {
	case <-r.exited:
	case <-ctx.Done():
		t.Fatal("copydb did not finish after Resume")
	}
	if r.err != nil || !strings.Contains(r.output(), "MATCH") {
		t.Fatalf("copydb: %v\n%s", r.err, rsTailString(r.output(), 2000))
	}
}
