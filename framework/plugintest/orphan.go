package plugintest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Host is the role of a test binary playing a host (Main): launch starts
// one plugin and returns how to stop it; Host prints "plugin <pid>" and
// waits to be killed (PluginExitsWithHost).
func Host(launch func(ctx context.Context) (stop func(), err error)) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stop, err := launch(ctx)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer stop()
	kids, err := ChildPIDs()
	if err != nil || len(kids) != 1 {
		fmt.Println("error: children", kids, err)
		return 1
	}
	fmt.Println("plugin", kids[0])
	time.Sleep(time.Minute)
	return 0
}

// PluginExitsWithHost starts the binary at host (a Host role), kills it
// once its plugin runs (no Close, no Kill), and fails unless the plugin
// exits by itself within 10 s, instead of holding guest RAM forever, and
// removes its socket directory, which nobody else could remove.
func PluginExitsWithHost(t *testing.T, host string) {
	cmd := exec.Command(host)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	pid := pluginOf(t, out)
	dir := SocketDir(t, pid)
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			kill(pid)
			t.Fatalf("plugin %s still runs 10s after its host was killed", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("socket directory %s after the orphan exited: %v; want it removed", dir, err)
	}
}

// pluginOf reads the pid a Host prints.
func pluginOf(t *testing.T, out io.Reader) string {
	t.Helper()
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		s.Scan()
		line <- s.Text()
	}()
	var pid string
	select {
	case l := <-line:
		if _, err := fmt.Sscanf(l, "plugin %s", &pid); err != nil {
			t.Fatalf("host said %q", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the host did not start its plugin within 30s")
	}
	return pid
}

// ChildPIDs lists the live children of this process, over all threads.
func ChildPIDs() ([]string, error) {
	tasks, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil || len(tasks) == 0 {
		return nil, fmt.Errorf("no /proc/self/task: %v", err)
	}
	var pids []string
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		pids = append(pids, strings.Fields(string(b))...)
	}
	return pids, nil
}

// KillChildren kills (SIGKILL) this process's children whose program
// is named name (argv[0]'s base name: a plugin's binary) and returns how
// many.
func KillChildren(t testing.TB, name string) int {
	return SignalChildren(t, name, syscall.SIGKILL)
}

// SignalChildren sends sig to this process's children whose program is
// named name (argv[0]'s base name) and returns how many it reached.
func SignalChildren(t testing.TB, name string, sig syscall.Signal) int {
	pids, err := ChildPIDs()
	if err != nil {
		t.Error(err)
		return 0
	}
	n := 0
	for _, pid := range pids {
		cmd, err := os.ReadFile("/proc/" + pid + "/cmdline")
		if err != nil {
			continue
		}
		argv0, _, _ := strings.Cut(string(cmd), "\x00")
		if filepath.Base(argv0) != name {
			continue
		}
		if p, err := strconv.Atoi(pid); err == nil && syscall.Kill(p, sig) == nil {
			n++
		}
	}
	return n
}

// SocketDir reads the private socket directory the host gave plugin
// process pid (go-plugin's PLUGIN_UNIX_SOCKET_DIR).
func SocketDir(t testing.TB, pid string) string {
	t.Helper()
	env, err := os.ReadFile("/proc/" + pid + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range bytes.Split(env, []byte{0}) {
		if v, ok := strings.CutPrefix(string(kv), "PLUGIN_UNIX_SOCKET_DIR="); ok {
			return v
		}
	}
	t.Fatal("the plugin has no PLUGIN_UNIX_SOCKET_DIR")
	return ""
}

// alive reports whether pid exists and is not a zombie.
func alive(pid string) bool {
	n, err := strconv.Atoi(pid)
	return err == nil && Running(n)
}

// Running reports whether process pid exists and is not a zombie (one
// that ended and was not reaped yet does not run).
func Running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')') // the command may hold ") "
	return i >= 0 && !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z")
}

func kill(pid string) {
	var n int
	if _, err := fmt.Sscan(pid, &n); err == nil {
		if p, err := os.FindProcess(n); err == nil {
			p.Kill()
		}
	}
}
