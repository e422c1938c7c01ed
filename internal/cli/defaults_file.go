package cli

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// ReadDefaultsFile reads the [client] section of a my.cnf-style option file, the way the mysql
// client does: "name = value" or "name" lines, # and ; comments, values optionally quoted, '_' and
// '-' alike in names. Keys are returned with '-'. An !include directive is refused rather than
// ignored, so a password kept in an included file is never silently missing.
func ReadDefaultsFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, fmt.Errorf("%s:%d: unterminated section header", path, n)
			}
			section = strings.TrimSpace(line[1:end])
			continue
		case line[0] == '!':
			if section == "" || section == "client" {
				return nil, fmt.Errorf("%s:%d: %s is not supported; put the options in this file", path, n, strings.Fields(line)[0])
			}
			continue
		}
		if section != "client" {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		k = strings.ReplaceAll(strings.TrimSpace(k), "_", "-")
		v, err := optionValue(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", path, n, k, err)
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// optionValue unquotes a value and drops a trailing comment, as the mysql client does.
func optionValue(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if q := v[0]; q == '\'' || q == '"' {
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			c := v[i]
			switch {
			case c == q:
				return b.String(), nil
			case c == '\\' && i+1 < len(v):
				i++
				switch v[i] {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				case 'r':
					b.WriteByte('\r')
				case 'b':
					b.WriteByte('\b')
				case 's':
					b.WriteByte(' ')
				default:
					b.WriteByte(v[i])
				}
			default:
				b.WriteByte(c)
			}
		}
		return "", fmt.Errorf("unterminated quote")
	}
	if i := strings.IndexByte(v, '#'); i >= 0 {
		v = strings.TrimSpace(v[:i])
	}
	return v, nil
}
