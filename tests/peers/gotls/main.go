// Go HTTPS peer for the TLS tests (crypto/tls in Go, not OpenSSL).
//
//	server: gotls server PORT CERT KEY
//	client: gotls client PORT DELAY_MS PATH...  (waits, then one keep-alive connection,
//	        prints statuses)
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: gotls server PORT CERT KEY | gotls client PORT DELAY_MS PATH...")
		os.Exit(2)
	}
	port := os.Args[2]
	switch os.Args[1] {
	case "server":
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "go says hi %s\n", r.URL.Path)
		})
		srv := &http.Server{Addr: "127.0.0.1:" + port, TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
		if err := srv.ListenAndServeTLS(os.Args[3], os.Args[4]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "client":
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			ForceAttemptHTTP2: false,
			TLSNextProto:      map[string]func(string, *tls.Conn) http.RoundTripper{},
			MaxConnsPerHost:   1,
		}
		c := &http.Client{Transport: tr}
		delay, _ := strconv.Atoi(os.Args[3])
		time.Sleep(time.Duration(delay) * time.Millisecond)
		for _, p := range os.Args[4:] {
			resp, err := c.Get("https://127.0.0.1:" + port + p)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			fmt.Println(resp.StatusCode)
		}
	}
}
