package e2e

import (
	"fmt"
	"testing"
)

// BenchmarkMigrate migrates live guests between two ferry-vmm processes
// over loopback TCP and reports the migration's own figures: total time,
// downtime, bytes on the wire and throughput. Each sub-benchmark boots a
// fresh pair per iteration.
func BenchmarkMigrate(b *testing.B) {
	needKVM(b, "BenchmarkMigrate")
	type cfg struct {
		mem, workload string
		compress      string
		streams       int
	}
	var cases []cfg
	for _, w := range []string{"idle", "hog:1536", "dirty:512@128"} {
		for _, c := range []string{"lz4", "none"} {
			for _, s := range []int{1, 2, 4} {
				cases = append(cases, cfg{"2G", w, c, s})
			}
		}
	}
	for _, w := range []string{"idle", "hog:7168", "dirty:2048@256"} {
		cases = append(cases, cfg{"8G", w, "lz4", 2})
	}
	for _, c := range cases {
		name := fmt.Sprintf("%s/%s/%s/streams=%d", c.mem, c.workload, c.compress, c.streams)
		b.Run(name, func(b *testing.B) {
			var total, down, wire, pages float64
			for i := 0; i < b.N; i++ {
				p := startPair(b, c.mem, c.workload,
					fmt.Sprintf("  compress = %q\n  streams = %d", c.compress, c.streams), `limits { max_downtime = "50ms" }`)
				rep, err := p.migrateOpts(false, nil)
				if err != nil || rep.Status != "completed" {
					b.Fatalf("migration %s: %v", rep.Status, err)
				}
				total += float64(rep.TotalMS)
				down += float64(rep.DowntimeMS)
				wire += float64(rep.BytesWire)
				pages += float64(rep.PagesSent)
				p.src.kill()
				p.dst.kill()
			}
			n := float64(b.N)
			b.ReportMetric(total/n, "total-ms")
			b.ReportMetric(down/n, "downtime-ms")
			b.ReportMetric(wire/n/(1<<20), "wire-MiB")
			b.ReportMetric(pages*4096/n/(total/n/1000)/1e9, "GB/s-data")
			b.ReportMetric(0, "ns/op")
		})
	}
}
