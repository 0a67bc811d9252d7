package smtpd

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"

	"github.com/emersion/go-smtp"
)

// BenchmarkServe measures SMTP-to-durable-250 in process, with one
// session and with 32 at once; the load tool (cmd/xarfd-load) measures the
// real binary.
func BenchmarkServe(b *testing.B) {
	for _, bc := range []struct{ size, sessions int }{{2 << 10, 1}, {2 << 10, 32}, {20 << 10, 1}, {20 << 10, 32}} {
		size := bc.size
		b.Run(fmt.Sprintf("%dKB/c%d", size>>10, bc.sessions), func(b *testing.B) {
			ts := startServer(b, nil)
			body := append([]byte("Subject: bench\r\n\r\n"), bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n"), size/66)...)
			b.SetBytes(int64(len(body)))
			b.SetParallelism(max(bc.sessions/runtime.GOMAXPROCS(0), 1))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c, err := smtp.Dial(ts.addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				for pb.Next() {
					if err := c.SendMail("a@origin.example", []string{"x@plain.test.example"}, bytes.NewReader(body)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(ts.ops.Load())/float64(max(ts.txs.Load(), 1)), "msgs/commit")
		})
	}
}
