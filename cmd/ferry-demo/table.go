package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The 2016 table: an 8 GiB guest migrated between two network namespaces
// joined by a veth pair shaped to 10 Gbit/s, idle and after a memory hog
// that ended just before migration, without hints and with each provider.

// row is one migration of the table.
type row struct {
	Workload string `json:"workload"`
	Hints    string `json:"hints"`
	TotalMS  int64  `json:"total_ms"`
	Downtime int64  `json:"downtime_ms"`
	Bytes    uint64 `json:"bytes_wire"`
	Skipped  uint64 `json:"pages_skipped"`
	Status   string `json:"status"`
	Error    string `json:"error,omitempty"`
}

var hintSets = []struct{ name, blocks string }{
	{"none", ""},
	{"pagemap", "hint \"pagemap\" { deadline = \"300ms\" }\n"},
	{"balloon", "hint \"balloon\" { deadline = \"500ms\" }\n"},
	{"both", "hint \"pagemap\" { deadline = \"300ms\" }\nhint \"balloon\" { deadline = \"500ms\" }\n"},
}

// table runs every case and prints the table; rows go to jsonOut if set.
// withQEMU adds QEMU's rows (qemu.go) on the same guests and link.
func table(bin, mem string, hog int, jsonOut string, withQEMU bool) error {
	var qemu, qemuVersion string
	if withQEMU {
		var err error
		if qemu, qemuVersion, err = qemuBinary(); err != nil {
			return err
		}
	}
	ns, err := newNetns()
	if err != nil {
		return err
	}
	defer ns.remove()
	dir, err := os.MkdirTemp("", "ferry-table-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var rows []row
	for _, wl := range []string{"idle", fmt.Sprintf("hog:%d", hog)} {
		for _, hs := range hintSets {
			r, err := tableCase(bin, dir, ns, mem, wl, hs.name, hs.blocks)
			if err != nil {
				r.Status, r.Error = "failed", err.Error()
			}
			fmt.Printf("   %-12s hints=%-8s %s\n", wl, hs.name, r.summary())
			rows = append(rows, r)
		}
		for _, fph := range []bool{false, true} {
			if qemu == "" {
				break
			}
			r, err := qemuCase(qemu, bin, dir, ns, mem, wl, fph)
			if err != nil {
				r.Status, r.Error = "failed", err.Error()
			}
			fmt.Printf("   %-12s %-14s %s\n", wl, r.Hints, r.summary())
			rows = append(rows, r)
		}
	}
	printTable(os.Stdout, mem, qemuVersion, rows)
	if jsonOut != "" {
		b, _ := json.MarshalIndent(rows, "", "  ")
		return os.WriteFile(jsonOut, b, 0o644)
	}
	return nil
}

func (r row) summary() string {
	if r.Status != "completed" {
		return fmt.Sprintf("%s: %s", r.Status, r.Error)
	}
	return fmt.Sprintf("%6d ms  %9.1f MB  downtime %d ms  skipped %d pages", r.TotalMS, float64(r.Bytes)/1e6, r.Downtime, r.Skipped)
}

// tableCase boots a source in namespace a and a destination in b, and
// migrates once.
func tableCase(bin, dir string, ns *netns, mem, workload, hints, blocks string) (row, error) {
	r := row{Workload: workload, Hints: hints}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	srcSock, dstSock := filepath.Join(dir, "src.sock"), filepath.Join(dir, "dst.sock")
	os.Remove(srcSock)
	os.Remove(dstSock)
	vmmBin := filepath.Join(bin, "ferry-vmm")
	src, srcOut, err := startQuiet(ctx, ns.exec(ns.a, vmmBin, "run", "-kernel", filepath.Join(bin, "guest.elf"), "-mem", mem,
		"-no-page-reporting", "-cmdline", "workload="+workload, "-control", srcSock))
	if err != nil {
		return r, err
	}
	defer stop(src)
	dst, _, err := startQuiet(ctx, ns.exec(ns.b, vmmBin, "run", "-incoming", "-mem", mem, "-control", dstSock))
	if err != nil {
		return r, err
	}
	defer stop(dst)
	if err := waitFor(srcOut, "tick 2 ", 5*time.Minute); err != nil {
		return r, fmt.Errorf("source guest: %w", err)
	}
	job := filepath.Join(dir, "job.hcl")
	text := fmt.Sprintf(`source      { control = %q }
destination { control = %q }
transport "tcp" {
  listen   = "%s:7070"
  streams  = 2
  compress = "lz4"
}
limits { max_downtime = "50ms" }
%s`, srcSock, dstSock, ns.addrB, blocks)
	if err := os.WriteFile(job, []byte(text), 0o600); err != nil {
		return r, err
	}
	mig := exec.CommandContext(ctx, filepath.Join(bin, "migrate"), "-config", job, "-json")
	var stderr strings.Builder
	mig.Stderr = &stderr
	mig.WaitDelay = 10 * time.Second // a killed migrate returns even if a child kept its output open
	out, err := mig.Output()
	var rep struct {
		Status     string `json:"status"`
		Error      string `json:"error"`
		TotalMS    int64  `json:"total_ms"`
		DowntimeMS int64  `json:"downtime_ms"`
		BytesWire  uint64 `json:"bytes_wire"`
		Skipped    uint64 `json:"pages_skipped"`
	}
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		return r, fmt.Errorf("migrate: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	r.Status, r.Error, r.TotalMS, r.Downtime, r.Bytes, r.Skipped = rep.Status, rep.Error, rep.TotalMS, rep.DowntimeMS, rep.BytesWire, rep.Skipped
	return r, nil
}

// printTable prints the rows beside the 2016 proposal's figures, and
// QEMU's (qemuVersion, "" if it did not run) on the same guests and link.
func printTable(w io.Writer, mem, qemuVersion string, rows []row) {
	get := func(wl, hints string) row {
		for _, r := range rows {
			if strings.HasPrefix(r.Workload, wl) && r.Hints == hints {
				return r
			}
		}
		return row{}
	}
	cell := func(r row) string {
		if r.Status != "completed" {
			return fmt.Sprintf("%20s", "failed")
		}
		return fmt.Sprintf("%7d ms %8.0f KB", r.TotalMS, float64(r.Bytes)/1000)
	}
	fmt.Fprintf(w, "\nMigration of a %s guest over a 10 Gbit/s veth pair (Ferry) vs the 2016 QEMU patch (8 GiB, 10 GbE):\n\n", mem)
	fmt.Fprintf(w, "%-26s %-21s %-21s\n", "", "idle", "after a memory hog")
	fmt.Fprintf(w, "%-26s %-21s %-21s\n", "2016 QEMU, no hints", "   1894 ms        -", "   7436 ms  8146291 KB")
	fmt.Fprintf(w, "%-26s %-21s %-21s\n", "2016 QEMU, balloon bitmap", "    421 ms        -", "    552 ms   361375 KB")
	for _, hs := range hintSets {
		fmt.Fprintf(w, "%-26s %-21s %-21s\n", "Ferry, hints: "+hs.name, cell(get("idle", hs.name)), cell(get("hog", hs.name)))
	}
	if qemuVersion != "" {
		for _, fph := range []bool{false, true} {
			name := "QEMU, free-page-hint " + onOff(fph)
			fmt.Fprintf(w, "%-26s %-21s %-21s\n", name, cell(get("idle", qemuHints(fph))), cell(get("hog", qemuHints(fph))))
		}
		fmt.Fprintf(w, "(QEMU: %s, microvm, the same guest and link, max-bandwidth unlimited, downtime-limit %d ms;\n"+
			" its bytes are query-migrate's ram transferred, Ferry's bytes on the wire)\n", qemuVersion, qemuDowntimeMS)
	}
	fmt.Fprintln(w)
}
