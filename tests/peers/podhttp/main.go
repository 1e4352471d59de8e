// HTTP peers for the pods of the real-cluster tests, each one long-lived process (busybox
// httpd forks a child per connection and busybox wget is a process per call; both exit
// before the agent can read which container they ran in).
//
//	podhttp serve PORT       answers every request with 200 and the path
//	podhttp get N URL...     N rounds of one GET to each URL, a new connection each
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: podhttp serve PORT | podhttp get N URL...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "served %s\n", r.URL.Path)
		})
		if err := http.ListenAndServe(":"+os.Args[2], nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "get":
		rounds, err := strconv.Atoi(os.Args[2])
		if err != nil || len(os.Args) < 4 {
			fmt.Fprintln(os.Stderr, "usage: podhttp get N URL...")
			os.Exit(2)
		}
		client := &http.Client{
			Transport: &http.Transport{DisableKeepAlives: true},
			Timeout:   10 * time.Second,
		}
		for i := 0; i < rounds; i++ {
			for _, url := range os.Args[3:] {
				resp, err := client.Get(url)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				fmt.Println(url, resp.StatusCode)
			}
			time.Sleep(20 * time.Millisecond)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: podhttp serve PORT | podhttp get N URL...")
		os.Exit(2)
	}
}
