package e2e

import (
	"bufio"
	"debug/elf"
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"testing"
)

// residentSections is how much of each part of the executable bin is
// resident in process pid, in KiB: its code ("text"), its read-only data
// ("rodata": .rodata, .typelink, .itablink) and the runtime's function
// tables ("pclntab"). Pages are counted present in /proc/PID/pagemap.
func residentSections(b *testing.B, pid int, bin string) map[string]int {
	present := presentPages(b, pid, bin)
	f, err := elf.Open(bin)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	part := map[string]string{".text": "text", ".rodata": "rodata", ".typelink": "rodata", ".itablink": "rodata", ".gopclntab": "pclntab"}
	out := map[string]int{}
	for _, s := range f.Sections {
		name, ok := part[s.Name]
		if !ok {
			continue
		}
		for p := s.Addr &^ 4095; p < s.Addr+s.Size; p += 4096 {
			if present[p] {
				out[name] += 4
			}
		}
	}
	return out
}

// presentPages is the set of resident pages of bin's mappings in pid.
func presentPages(b *testing.B, pid int, bin string) map[uint64]bool {
	maps, err := os.Open("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		b.Fatal(err)
	}
	defer maps.Close()
	pm, err := os.Open("/proc/" + strconv.Itoa(pid) + "/pagemap")
	if err != nil {
		b.Fatal(err)
	}
	defer pm.Close()
	out := map[uint64]bool{}
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		// 00400000-00fce000 r-xp 00000000 fd:01 1234   /tmp/berth-bin-1/berth
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[5] != bin {
			continue
		}
		from, to, _ := strings.Cut(f[0], "-")
		start, _ := strconv.ParseUint(from, 16, 64)
		end, _ := strconv.ParseUint(to, 16, 64)
		entries := make([]byte, (end-start)/4096*8)
		if _, err := pm.ReadAt(entries, int64(start/4096*8)); err != nil {
			b.Fatal(err)
		}
		for i := range (end - start) / 4096 {
			if binary.LittleEndian.Uint64(entries[i*8:])&(1<<63) != 0 { // present
				out[start+i*4096] = true
			}
		}
	}
	return out
}
