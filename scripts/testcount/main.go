// Command testcount summarises a `go test -json` stream read from
// standard input: how many leaf tests (tests without subtests) passed,
// failed and were skipped, and the names of those that failed. It exits
// 1 if any failed or the stream held no test. scripts/driver-tests.sh
// reads the driver's own test suites with it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
)

type event struct {
	Action string
	Test   string
}

func main() {
	label := "tests"
	if len(os.Args) > 1 {
		label = os.Args[1]
	}
	result := map[string]string{}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var ev event
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Test == "" {
			continue
		}
		switch ev.Action {
		case "pass", "fail", "skip":
			result[ev.Test] = ev.Action
		}
	}
	names := make([]string, 0, len(result))
	for n := range result {
		names = append(names, n)
	}
	slices.Sort(names)
	counts := map[string]int{}
	var failed []string
	for i, n := range names {
		// Sorted, a test's subtests follow it directly.
		if i+1 < len(names) && strings.HasPrefix(names[i+1], n+"/") {
			continue
		}
		counts[result[n]]++
		if result[n] == "fail" {
			failed = append(failed, n)
		}
	}
	fmt.Printf("%s: %d passed, %d failed, %d skipped\n", label, counts["pass"], counts["fail"], counts["skip"])
	for _, n := range failed {
		fmt.Printf("%s: FAILED %s\n", label, n)
	}
	if len(failed) > 0 || len(names) == 0 {
		os.Exit(1)
	}
}
