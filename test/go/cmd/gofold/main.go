// Prints the table encoding/json folds member names with (Unicode simple case folding, each rune
// to the smallest rune of its orbit, as encoding/json's foldName does) for every rune above
// ASCII that folds to another: src/lib/go-fold.ts carries this output, and a test compares the
// two. Each entry is "start±delta" or "start±delta*count/stride" (hex): `count` runes from
// `start`, `stride` apart, each folding to itself plus `delta`.
//
// Usage: gofold
package main

import (
	"fmt"
	"strings"
	"unicode"
)

// foldRune as encoding/json (Go 1.21+, fold.go) has it: the smallest rune of the fold orbit.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

func main() {
	type entry struct{ r, delta rune }
	var entries []entry
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		if f := foldRune(r); f != r {
			entries = append(entries, entry{r, f - r})
		}
	}
	var parts []string
	for i := 0; i < len(entries); {
		j := i + 1
		stride := rune(0)
		if j < len(entries) && entries[j].delta == entries[i].delta {
			stride = entries[j].r - entries[i].r
			for j < len(entries) && entries[j].delta == entries[i].delta && entries[j].r-entries[j-1].r == stride {
				j++
			}
		}
		if j-i == 1 {
			parts = append(parts, fmt.Sprintf("%x%+x", entries[i].r, entries[i].delta))
		} else {
			parts = append(parts, fmt.Sprintf("%x%+x*%x/%x", entries[i].r, entries[i].delta, j-i, stride))
		}
		i = j
	}
	fmt.Printf("unicode %s\n%s\n", unicode.Version, strings.Join(parts, ","))
}
