// Command benchhttp serves a folder over plain HTTP on loopback with Range support and counts
// the bytes it sends, for benchmarks that compare remote readers. GET /.stats returns
// {"bytes":N,"requests":N,"conns":N}
// (conns: TCP connections accepted, to see whether clients reuse them); POST /.stats/reset zeroes the counters. The base URL is printed on
// stdout and, with -url-file, written to that file once the server listens.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync/atomic"
)

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// ReadFrom keeps the server's sendfile path (http.FileServer copies with io.Copy): the
// counting costs nothing per byte, so both readers compared see the same cheap server.
func (w countingWriter) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Copy(w.ResponseWriter, r)
	w.n.Add(n)
	return n, err
}

func main() {
	dir := flag.String("dir", ".", "folder to serve")
	addr := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	urlFile := flag.String("url-file", "", "write the base URL to this file once listening")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("benchhttp: -listen must be a loopback address, got %q", *addr)
	}
	var bytes, reqs, conns atomic.Int64
	files := http.FileServer(http.Dir(*dir))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.stats", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]int64{"bytes": bytes.Load(), "requests": reqs.Load(), "conns": conns.Load()})
	})
	mux.HandleFunc("POST /.stats/reset", func(w http.ResponseWriter, r *http.Request) {
		bytes.Store(0)
		reqs.Store(0)
		conns.Store(0)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		files.ServeHTTP(countingWriter{w, &bytes}, r)
	})
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	base := fmt.Sprintf("http://%s/\n", l.Addr())
	fmt.Fprint(os.Stdout, base)
	if *urlFile != "" {
		// Written then renamed, so a reader never sees half a URL.
		if err := os.WriteFile(*urlFile+".tmp", []byte(base), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(*urlFile+".tmp", *urlFile); err != nil {
			log.Fatal(err)
		}
	}
	srv := &http.Server{Handler: mux, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}}
	log.Fatal(srv.Serve(l))
}
