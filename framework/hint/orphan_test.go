package hint_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
)

// hostName is the test binary acting as a host that launches a plugin,
// prints the plugin's pid and waits to be killed.
const hostName = "ferry-hint-host"

func host() int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := hint.Launch(ctx, filepath.Join(filepath.Dir(os.Args[0]), "ferry-hint-zero"), nil, hclog.NewNullLogger())
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer p.Kill()
	kids, err := childPIDs()
	if err != nil || len(kids) != 1 {
		fmt.Println("error: children", kids, err)
		return 1
	}
	fmt.Println("plugin", kids[0])
	time.Sleep(time.Minute)
	return 0
}

// childPIDs lists the live children of this process, over all threads.
func childPIDs() ([]string, error) {
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

// TestPluginExitsWithHost: a plugin whose host was killed (no Close, no
// Kill) exits by itself instead of holding guest RAM forever.
func TestPluginExitsWithHost(t *testing.T) {
	cmd := exec.Command(filepath.Join(pluginDir, hostName))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
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
	dir := socketDir(t, pid)
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			killPID(pid)
			t.Fatalf("plugin %s still runs 10s after its host was killed", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Nobody else could remove the plugin's socket directory.
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("socket directory %s after the orphan exited: %v; want it removed", dir, err)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(after, "Z")
}

func killPID(pid string) {
	var n int
	if _, err := fmt.Sscan(pid, &n); err == nil {
		if p, err := os.FindProcess(n); err == nil {
			p.Kill()
		}
	}
}
