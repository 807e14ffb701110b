package main

import (
	"bufio"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// machineInfo describes where the benchmark ran.
type machineInfo struct {
	cpu      string
	cores    int
	memory   int64 // bytes
	kernel   string
	fs       string
	load     string // 1-minute load average when the run started
	goTool   string
	goBroker string
	franzGo  string
}

// describeMachine collects the CPU, memory, kernel, the filesystem holding
// dir, and the Go versions of this tool and of the broker binary.
func describeMachine(dir, bin string) machineInfo {
	m := machineInfo{
		cpu:    cpuModel(),
		cores:  runtime.NumCPU(),
		kernel: kernelRelease(),
		fs:     filesystemOf(dir),
		goTool: runtime.Version(),
		load:   loadAverage(),
	}
	m.memory, _ = fileField("/proc/meminfo", "MemTotal")
	if bin != "" {
		if bi, err := buildinfo.ReadFile(bin); err == nil {
			m.goBroker = bi.GoVersion
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/twmb/franz-go" {
				m.franzGo = d.Version
			}
		}
	}
	return m
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// kernelRelease returns the kernel's name and release.
func kernelRelease() string {
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return "Linux " + strings.TrimSpace(string(rel))
}

// filesystemOf returns the type, device and mount point of the filesystem
// holding dir and its free space, from `df -T`.
func filesystemOf(dir string) string {
	out, err := exec.Command("df", "-T", dir).Output()
	if err != nil {
		return "unknown (df -T failed)"
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 7 {
		return "unknown: " + strings.Join(lines, "; ")
	}
	free := f[4] + " KiB"
	if kib, err := strconv.ParseInt(f[4], 10, 64); err == nil {
		free = fmt.Sprintf("%.0f GiB", float64(kib)/(1<<20))
	}
	return fmt.Sprintf("%s on %s, mounted on %s, %s free", f[1], f[0], f[6], free)
}
