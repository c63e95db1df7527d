// Command loadtest measures the sidecar against a bare httputil.ReverseProxy with the
// same transport settings, in one run, on loopback, with a real load generator (wrk,
// from Debian's package): throughput with the token cache on and off, the rate of
// rejections of invalid tokens, the latency added at a fixed moderate rate, and the
// sidecar's peak resident memory at that load.
//
//	go run ./internal/loadtest [-duration 15s] [-connections 64] [-rate 1000]
//
// Every process listens on 127.0.0.1; every run is bounded in time.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/tokengate/jwks/jwkstest"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "upstream":
			serveUpstream(os.Args[2])
			return
		case "bare-proxy":
			serveBareProxy(os.Args[2], os.Args[3])
			return
		}
	}
	duration := flag.Duration("duration", 15*time.Second, "length of each wrk run")
	conns := flag.Int("connections", 64, "wrk connections")
	rate := flag.Int("rate", 1000, "requests per second of the fixed-rate latency run")
	latencyFor := flag.Duration("latency-duration", 10*time.Second, "length of the fixed-rate run")
	rounds := flag.Int("rounds", 3, "rounds of every wrk run; ratios are medians over rounds")
	flag.Parse()
	if err := run(*duration, *conns, *rate, *latencyFor, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// serveUpstream is the API behind both proxies: a small fixed answer.
func serveUpstream(addr string) {
	body := []byte(`{"id":42,"status":"shipped"}`)
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})}
	fmt.Fprintln(os.Stderr, srv.ListenAndServe())
}

// serveBareProxy is the baseline: httputil.ReverseProxy with Rewrite, the transport
// settings and the copy-buffer pool of the sidecar, and nothing else.
func serveBareProxy(addr, upstream string) {
	u, _ := url.Parse(upstream)
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		DisableCompression:    true,
	}
	rp := &httputil.ReverseProxy{Transport: tr, BufferPool: &bufferPool{}, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		pr.Out.Host = pr.In.Host
		pr.SetXForwarded()
	}}
	srv := &http.Server{Addr: addr, Handler: rp, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	fmt.Fprintln(os.Stderr, srv.ListenAndServe())
}

type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte {
	if p, ok := b.pool.Get().(*[]byte); ok {
		return *p
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(p []byte) { b.pool.Put(&p) }

type proc struct {
	cmd  *exec.Cmd
	addr string
}

func (p *proc) stop() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func start(name string, args ...string) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &proc{cmd: cmd}, nil
}

func waitHTTP(url string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer", url)
}

func run(duration time.Duration, conns, rate int, latencyFor time.Duration, rounds int) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk is not installed: apt-get install wrk")
	}
	dir, err := os.MkdirTemp("", "tokengate-loadtest")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "tokengate")
	fmt.Fprintln(os.Stderr, "building tokengate...")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/tokengate").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	as, err := jwkstest.NewServer(jwkstest.WithAudience("https://orders.example.com"))
	if err != nil {
		return err
	}
	defer as.Close()

	upAddr := freeAddr()
	up, err := start(self, "upstream", upAddr)
	if err != nil {
		return err
	}
	defer up.stop()
	bareAddr := freeAddr()
	bare, err := start(self, "bare-proxy", bareAddr, "http://"+upAddr)
	if err != nil {
		return err
	}
	defer bare.stop()

	sidecar := func(cache string) (*proc, string, error) {
		listen, admin := freeAddr(), freeAddr()
		cfg := filepath.Join(dir, "tokengate-"+cache+".yaml")
		text := fmt.Sprintf(`listen: %q
admin: %q
upstream: "http://%s"
issuers:
  - issuer: %q
    audiences: [https://orders.example.com]
tokens:
  cache: {entries: %s}
routes:
  - match: "GET /orders/{id}"
    scopes: [orders:read]
`, listen, admin, upAddr, as.Issuer, cache)
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			return nil, "", err
		}
		p, err := start(bin, "sidecar", "--config", cfg, "--log-level", "error")
		if err != nil {
			return nil, "", err
		}
		p.addr = listen
		if err := waitHTTP("http://" + admin + "/readyz"); err != nil {
			p.stop()
			return nil, "", err
		}
		return p, listen, nil
	}
	if err := waitHTTP("http://" + upAddr + "/"); err != nil {
		return err
	}
	if err := waitHTTP("http://" + bareAddr + "/"); err != nil {
		return err
	}

	valid := as.MustMint(jwkstest.Claims{"scope": "orders:read", "exp": time.Now().Add(time.Hour).Unix()})
	forged := as.MustMint(jwkstest.Claims{"scope": "orders:read", "exp": time.Now().Add(time.Hour).Unix()}, jwkstest.WithSigner(jwkstest.MustGenerateKey("rsa-1", "RS256")))

	withCache, addrCache, err := sidecar("10000")
	if err != nil {
		return err
	}
	defer withCache.stop()
	noCache, addrNoCache, err := sidecar("0")
	if err != nil {
		return err
	}
	defer noCache.stop()

	// Each round runs the baseline first and last, and every scenario in between; a
	// scenario's ratio is against the mean of its round's two baselines, so that drift
	// in the machine's speed (shared 2-core VMs drift) does not bias it. The reported
	// ratio is the median over rounds.
	scenarios := []struct {
		name, addr, token string
		p                 *proc
	}{
		{"tokengate, cache on, valid RS256 token", addrCache, valid, withCache},
		{"tokengate, cache off, valid RS256 token", addrNoCache, valid, noCache},
		{"tokengate, forged token, repeated (rejected)", addrCache, forged, withCache},
		{"tokengate, forged token, cache off (rejected; signature checked every time)", addrNoCache, forged, noCache},
	}
	type sample struct {
		rps, ratio float64
		cpu        time.Duration
		non2xx     string
	}
	samples := make([][]sample, len(scenarios)+1) // last: the baseline
	one := func(addr, token string, p *proc) (sample, error) {
		_, _, _ = wrk(addr, token, conns, 2*time.Second) // warm-up: connections, caches
		before := cpuTime(p.cmd.Process.Pid)
		rps, non2xx, err := wrk(addr, token, conns, duration)
		if err != nil {
			return sample{}, err
		}
		used := cpuTime(p.cmd.Process.Pid) - before
		return sample{rps: rps, non2xx: non2xx, cpu: used / time.Duration(max(1, rps*duration.Seconds()))}, nil
	}
	for round := range rounds {
		fmt.Fprintf(os.Stderr, "round %d of %d...\n", round+1, rounds)
		first, err := one(bareAddr, valid, bare)
		if err != nil {
			return err
		}
		var got []sample
		for _, sc := range scenarios {
			smp, err := one(sc.addr, sc.token, sc.p)
			if err != nil {
				return err
			}
			got = append(got, smp)
		}
		last, err := one(bareAddr, valid, bare)
		if err != nil {
			return err
		}
		base := (first.rps + last.rps) / 2
		for i, smp := range got {
			smp.ratio = smp.rps / base
			samples[i] = append(samples[i], smp)
		}
		first.ratio, last.ratio = first.rps/base, last.rps/base
		samples[len(scenarios)] = append(samples[len(scenarios)], first, last)
	}
	median := func(xs []sample, key func(sample) float64) float64 {
		v := make([]float64, len(xs))
		for i, x := range xs {
			v[i] = key(x)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	withCache.stop()
	noCache.stop()

	// Latency at a fixed, moderate rate, with a fresh sidecar whose peak memory is then
	// read from /proc.
	fresh, addrFresh, err := sidecar("10000")
	if err != nil {
		return err
	}
	defer fresh.stop()
	fmt.Fprintln(os.Stderr, "fixed rate: bare...")
	bareLat, err := fixedRate(bareAddr, valid, rate, latencyFor)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "fixed rate: tokengate...")
	gateLat, err := fixedRate(addrFresh, valid, rate, latencyFor)
	if err != nil {
		return err
	}
	hwm, _ := peakRSS(fresh.cmd.Process.Pid)

	fmt.Printf("\n## Load test (%s, %d cores, wrk -t1 -c%d, %d rounds of %s per run)\n\n", time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), conns, rounds, duration)
	fmt.Println("| run | requests/s (median) | × bare proxy (median) | × per round | proxy CPU per request |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	names := append([]string{}, "bare ReverseProxy (baseline)")
	rows := append([][]sample{samples[len(scenarios)]}, samples[:len(scenarios)]...)
	for _, sc := range scenarios {
		names = append(names, sc.name)
	}
	for i, row := range rows {
		var per []string
		for _, smp := range row {
			per = append(per, fmt.Sprintf("%.2f", smp.ratio))
		}
		fmt.Printf("| %s | %.0f | %.2f | %s | %s |\n", names[i], median(row, func(s sample) float64 { return s.rps }),
			median(row, func(s sample) float64 { return s.ratio }), strings.Join(per, " "),
			time.Duration(median(row, func(s sample) float64 { return float64(s.cpu) })).Round(100*time.Nanosecond))
	}
	fmt.Printf("\nFixed rate %d req/s for %s (open loop, latency from the scheduled send time):\n\n", rate, latencyFor)
	fmt.Println("| target | p50 | p99 | p99.9 | errors |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	fmt.Printf("| bare ReverseProxy | %s | %s | %s | %d |\n", bareLat.p(50), bareLat.p(99), bareLat.p(99.9), bareLat.errors)
	fmt.Printf("| tokengate (cache on) | %s | %s | %s | %d |\n", gateLat.p(50), gateLat.p(99), gateLat.p(99.9), gateLat.errors)
	fmt.Printf("\nAdded p99 latency: %s. Peak resident memory of the sidecar at that load (VmHWM): %.1f MiB.\n",
		(gateLat.pd(99) - bareLat.pd(99)).Round(time.Microsecond), float64(hwm)/(1<<20))
	return nil
}

var (
	reqsRe   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	non2xxRe = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
)

// wrk runs wrk with the token and returns requests per second and the non-2xx count.
func wrk(addr, token string, conns int, d time.Duration) (float64, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "wrk", "-t1", "-c"+strconv.Itoa(conns), "-d"+d.String(),
		"-H", "Authorization: Bearer "+token, "http://"+addr+"/orders/42").CombinedOutput()
	if err != nil {
		return 0, "", fmt.Errorf("wrk: %v\n%s", err, out)
	}
	m := reqsRe.FindSubmatch(out)
	if m == nil {
		return 0, "", fmt.Errorf("no Requests/sec in wrk's output:\n%s", out)
	}
	rps, _ := strconv.ParseFloat(string(m[1]), 64)
	non := "0"
	if n := non2xxRe.FindSubmatch(out); n != nil {
		non = string(n[1])
	}
	return rps, non, nil
}

type latencies struct {
	d      []time.Duration
	errors int
}

func (l latencies) pd(p float64) time.Duration {
	if len(l.d) == 0 {
		return 0
	}
	i := int(float64(len(l.d)-1) * p / 100)
	return l.d[i]
}

func (l latencies) p(p float64) string { return l.pd(p).Round(time.Microsecond).String() }

// fixedRate sends rate requests per second for d, open loop: each request is sent at
// its scheduled time whatever the others do, and its latency counts from that time, so
// a slow server cannot hide its slowness by slowing the sender.
func fixedRate(addr, token string, rate int, d time.Duration) (latencies, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	n := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	var (
		mu  sync.Mutex
		out latencies
		wg  sync.WaitGroup
	)
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(at))
		wg.Go(func() {
			req, _ := http.NewRequest("GET", "http://"+addr+"/orders/42", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			ok := err == nil && resp.StatusCode == 200
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			lat := time.Since(at)
			mu.Lock()
			if ok {
				out.d = append(out.d, lat)
			} else {
				out.errors++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(out.d)
	return out, nil
}

// cpuTime reads the user and system CPU time a process has used.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}

// peakRSS reads VmHWM, the peak resident set, of a process.
func peakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM")
}
