package httpsrc

import "testing"

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-0/1", "bytes 5-9/10", "bytes 0-9/*", "bytes */0", "bytes -1-2/3", "bytes 9-5/10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, b, total, err := parseContentRange(s)
		if err != nil {
			return
		}
		if a < 0 || b < a || total != -1 && total <= b {
			t.Fatalf("%q accepted as %d-%d/%d", s, a, b, total)
		}
	})
}
