package smtpd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"testing/iotest"
)

// jumpyReader hands out its data in reads of random sizes, as a socket
// does.
type jumpyReader struct {
	data []byte
	rnd  *rand.Rand
}

func (r *jumpyReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), 1+r.rnd.IntN(200<<10))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func TestReadDataWholeMessage(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 4095, 64 << 10, 64<<10 + 1, 1 << 20, 3<<20 + 17, 9 << 20} {
		for _, start := range []int{0, headroom + 8192, headroom + size + readSlack} {
			name := fmt.Sprintf("%d/cap%d", size, start)
			t.Run(name, func(t *testing.T) {
				want := make([]byte, size)
				for i := range want {
					want[i] = byte(rnd.IntN(256))
				}
				var asked []int
				reserve := func(n int) bool { asked = append(asked, n); return true }
				msg, n, err := readData(&jumpyReader{want, rnd}, make([]byte, 0, start), 0, reserve)
				if err != nil {
					t.Fatal(err)
				}
				if n != size || len(msg) != headroom+size || !bytes.Equal(msg[headroom:], want) {
					t.Fatalf("read %d bytes (message %d), want the %d sent", n, len(msg)-headroom, size)
				}
				// Every read was covered by the reservation made before it.
				if last := asked[len(asked)-1]; last < size {
					t.Fatalf("reserved at most %d for %d bytes", last, size)
				}
			})
		}
	}
}

func TestReadDataStopsWhenRefused(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 5<<20)
	limit := 2 << 20
	msg, n, err := readData(iotest.HalfReader(bytes.NewReader(data)), nil, 0, func(want int) bool { return want <= limit })
	if !errors.Is(err, errNoRoom) {
		t.Fatalf("err = %v, want errNoRoom", err)
	}
	if n > limit || n == 0 {
		t.Fatalf("read %d bytes with %d reserved", n, limit)
	}
	if len(msg) > headroom+n {
		t.Fatalf("returned %d bytes for %d read", len(msg)-headroom, n)
	}
}

func TestReadDataError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(make([]byte, 3<<20)), iotest.ErrReader(boom))
	_, n, err := readData(r, nil, 0, func(int) bool { return true })
	if !errors.Is(err, boom) || n != 3<<20 {
		t.Fatalf("readData = %d, %v; want %d, boom", n, err, 3<<20)
	}
}

// BenchmarkReadData states what reading one large message without SIZE=
// allocates, in multiples of its size ("copies").
func BenchmarkReadData(b *testing.B) {
	for _, size := range []int{4 << 20, 10 << 20, 50 << 20} {
		data := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), size/64)
		b.Run(fmt.Sprintf("%dMB", size>>20), func(b *testing.B) {
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			for b.Loop() {
				buf := make([]byte, 0, maxPooledBuf) // what the pool hands out at most
				if _, _, err := readData(iotest.HalfReader(bytes.NewReader(data)), buf, 0, func(int) bool { return true }); err != nil {
					b.Fatal(err)
				}
			}
			runtime.ReadMemStats(&m1)
			b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc-uint64(b.N*maxPooledBuf))/float64(b.N)/float64(len(data)), "copies")
			b.ReportMetric(0, "ns/op")
		})
	}
}
