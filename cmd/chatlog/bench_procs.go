package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/postgres"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// The process-appends workload: 64 appenders split over 2 processes, all
// appending to the same 64 conversations of the scratch database, as
// replicas of a chat backend share one store. The processes are copies of
// this program run as "bench --worker SPEC"; each opens the store itself,
// says it is ready, waits for the word, appends, and prints its latencies.

const (
	benchProcs          = 2
	benchProcAppenders  = 64
	benchProcConvs      = 64
	benchWorkerStartCap = time.Minute // how long a process may take to open the store
)

// benchWorkerEnv marks a process started as a bench worker, for binaries
// that are not chatlog itself (a test binary runs the command then).
const benchWorkerEnv = "CHATLOG_BENCH_WORKER"

// benchWorkerSpec is what one process of process-appends does.
type benchWorkerSpec struct {
	Appenders int           `json:"appenders"`
	Limit     int           `json:"limit"`
	Budget    time.Duration `json:"budget"`
	// Prefix makes the process's keys its own.
	Prefix string `json:"prefix"`
	Convs  int    `json:"convs"`
}

// benchWorkerResult is the one line a worker prints at the end.
type benchWorkerResult struct {
	Ops int64 `json:"ops"`
	// LatencyNS are the appends' latencies in nanoseconds.
	LatencyNS []int64 `json:"latency_ns"`
	Err       string  `json:"err,omitempty"`
}

func benchProcessAppends(ctx context.Context, be *benchEnv) ([]benchRow, error) {
	const name = "process-appends"
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program to start its processes: %w", err)
	}
	type proc struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
	}
	procs := make([]*proc, benchProcs)
	defer func() {
		for _, p := range procs {
			if p != nil && p.cmd.ProcessState == nil {
				p.cmd.Process.Kill()
				p.cmd.Wait()
			}
		}
	}()
	for k := range procs {
		spec, _ := json.Marshal(benchWorkerSpec{
			Appenders: benchProcAppenders / benchProcs, Limit: be.scale.parAppends / benchProcs,
			Budget: be.scale.budget, Prefix: fmt.Sprintf("%s-p%d", name, k), Convs: benchProcConvs,
		})
		cmd := exec.CommandContext(ctx, exe, "--db", be.loc, "bench", "--worker", string(spec))
		cmd.Env = append(os.Environ(), benchWorkerEnv+"=1")
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start process %d: %w", k, err)
		}
		procs[k] = &proc{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	}
	readLine := func(k int) (string, error) {
		type line struct {
			s   string
			err error
		}
		ch := make(chan line, 1)
		go func() {
			s, err := procs[k].out.ReadString('\n')
			ch <- line{s, err}
		}()
		select {
		case l := <-ch:
			if l.err != nil {
				return "", fmt.Errorf("process %d: %w", k, l.err)
			}
			return l.s, nil
		case <-time.After(benchWorkerStartCap + 2*be.scale.budget):
			return "", fmt.Errorf("process %d said nothing for %v", k, benchWorkerStartCap+2*be.scale.budget)
		}
	}
	for k := range procs {
		l, err := readLine(k)
		if err != nil {
			return nil, err
		}
		if strings.TrimSpace(l) != "ready" {
			return nil, fmt.Errorf("process %d: %q, want ready", k, l)
		}
	}
	start := time.Now()
	for _, p := range procs {
		io.WriteString(p.stdin, "go\n")
	}
	var (
		ops int64
		lat []time.Duration
	)
	for k, p := range procs {
		l, err := readLine(k)
		if err != nil {
			return nil, err
		}
		var res benchWorkerResult
		if err := json.Unmarshal([]byte(l), &res); err != nil {
			return nil, fmt.Errorf("process %d: %w", k, err)
		}
		if res.Err != "" {
			return nil, fmt.Errorf("process %d: %s", k, res.Err)
		}
		ops += res.Ops
		for _, ns := range res.LatencyNS {
			lat = append(lat, time.Duration(ns))
		}
		if err := p.cmd.Wait(); err != nil {
			return nil, fmt.Errorf("process %d: %w", k, err)
		}
	}
	wall := time.Since(start)
	be.messages.Add(ops)
	what := fmt.Sprintf("Append, %d appenders in %d processes", benchProcAppenders, benchProcs)
	return []benchRow{newRow(name, what, ops, "events/s", wall, lat)}, nil
}

// benchWorker is one process of process-appends: it opens --db (the
// scratch database), says "ready", waits for a line on stdin, appends new
// messages from its appenders and prints a benchWorkerResult.
func benchWorker(ctx context.Context, env *env, specJSON string) error {
	var spec benchWorkerSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil || spec.Appenders <= 0 || spec.Limit <= 0 || spec.Convs <= 0 {
		return usageErr("--worker: want a spec of appenders, limit, budget, prefix and convs, got %q", specJSON)
	}
	r, err := env.repo(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, "ready")
	if _, err := bufio.NewReader(env.stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("wait for the start: %w", err)
	}
	lat, _, err := timed(ctx, spec.Appenders, spec.Limit, spec.Budget, func(ctx context.Context, i int) error {
		e := benchMessage(fmt.Sprintf("process-appends-%02d", i%spec.Convs), fmt.Sprintf("%s-%d", spec.Prefix, i), i)
		res, err := r.Append(ctx, e, repo.AppendOptions{})
		if err == nil && res.Outcome != repo.Appended {
			err = fmt.Errorf("append %d: %s, want appended", i, res.Outcome)
		}
		return err
	})
	res := benchWorkerResult{Ops: int64(len(lat)), LatencyNS: make([]int64, len(lat))}
	for i, d := range lat {
		res.LatencyNS[i] = int64(d)
	}
	if err != nil {
		res.Err = err.Error()
	}
	b, _ := json.Marshal(res)
	_, werr := fmt.Fprintf(env.stdout, "%s\n", b)
	return errors.Join(err, werr)
}

// appended returns how many events the store appended since it was
// opened.
func appended(s store) int64 {
	switch s := s.(type) {
	case *sqlite.Repo:
		return s.Stats().Appended
	case *postgres.Repo:
		return s.Stats().Appended
	}
	return 0
}
