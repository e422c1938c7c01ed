package ferry_test

import (
	"os"
	"strings"
	"testing"
)

// The README's library snippet is copyAndCutover's body, so it compiles with the package's tests.
func TestREADMESnippetCompiles(t *testing.T) {
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(src), "\t// README begin\n")
	body, _, ok := strings.Cut(body, "\t// README end\n")
	if !ok {
		t.Fatal("example_test.go: README markers not found")
	}
	var want strings.Builder
	for _, line := range strings.SplitAfter(body, "\n") {
		want.WriteString(strings.TrimPrefix(line, "\t"))
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```go\n"+want.String()+"```\n") {
		t.Errorf("README.md's Go snippet is not copyAndCutover's body (example_test.go); paste it:\n```go\n%s```", want.String())
	}
}
