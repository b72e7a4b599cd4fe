package zoo

import (
	"context"
	"fmt"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

func init() {
	register(&Workload{
		Name:     "mem",
		Summary:  "a counter holding N MiB of anonymous memory, every word checked each tick",
		Category: "static/maps (memory contents)",
		run:      runMem,
	})
}

const pageSize = 4096

// runMem maps args[0] MiB (default 64) and fills page p with the word
// want[p]; each tick it rewrites one page with a new word and checks every
// word of every page. A single flipped byte anywhere fails the check.
func runMem(ctx context.Context, r *reporter, args []string) error {
	mib := 64
	if len(args) > 0 {
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 1 {
			return fmt.Errorf("mem: size %q: want a whole number of MiB", args[0])
		}
		mib = n
	}
	size := mib << 20
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("mem: mmap %d MiB: %w", mib, err)
	}
	words := unsafe.Slice((*uint64)(unsafe.Pointer(&mem[0])), size/8)
	pages := size / pageSize
	const perPage = pageSize / 8
	want := make([]uint64, pages)
	for p := range pages {
		want[p] = 0x9e3779b97f4a7c15 ^ uint64(p)
		fill(words[p*perPage:(p+1)*perPage], want[p])
	}
	r.st.Addr = uint64(uintptr(unsafe.Pointer(&mem[0])))
	var gen uint64
	return r.loop(ctx, func() (string, error) {
		gen++
		p := int(gen) % pages
		want[p] = gen<<20 | uint64(p)
		fill(words[p*perPage:(p+1)*perPage], want[p])
		var sum uint64
		for p := range pages {
			for i, w := range words[p*perPage : (p+1)*perPage] {
				if w != want[p] {
					return "", fmt.Errorf("mem: word %d of page %d is %#x, want %#x", i, p, w, want[p])
				}
			}
			sum += want[p]
		}
		return fmt.Sprintf("%d MiB intact, checksum %#x", mib, sum), nil
	})
}

func fill(ws []uint64, v uint64) {
	for i := range ws {
		ws[i] = v
	}
}
