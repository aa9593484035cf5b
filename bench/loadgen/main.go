// Command loadgen is make bench's HTTP load generator (app/cohttp/*):
// conns keep-alive connections, each sending GET url in a loop for secs
// seconds, every answer checked against want. It prints one line: the
// requests answered, the errors, and the latency's p50 and p99 in µs.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

func main() {
	url := flag.String("url", "", "the URL to GET")
	want := flag.String("want", "", "the body every answer must have")
	conns := flag.Int("conns", 16, "connections, each with one request at a time")
	secs := flag.Float64("secs", 1, "seconds to run")
	flag.Parse()
	deadline := time.Now().Add(time.Duration(*secs * float64(time.Second)))
	var mu sync.Mutex
	var latencies []time.Duration
	errors := 0
	var wg sync.WaitGroup
	for range *conns {
		wg.Go(func() {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
			var mine []time.Duration
			bad := 0
			for time.Now().Before(deadline) {
				t0 := time.Now()
				resp, err := client.Get(*url)
				if err == nil {
					var body []byte
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && (resp.StatusCode != http.StatusOK || string(body) != *want) {
						err = fmt.Errorf("%d %q", resp.StatusCode, body)
					}
				}
				if err != nil {
					if bad == 0 {
						fmt.Fprintln(os.Stderr, "loadgen:", err)
					}
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			client.CloseIdleConnections()
			mu.Lock()
			latencies = append(latencies, mine...)
			errors += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(latencies)
	pct := func(p int) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[min(len(latencies)-1, len(latencies)*p/100)].Microseconds())
	}
	fmt.Printf("%d %d %.0f %.0f\n", len(latencies), errors, pct(50), pct(99))
}
