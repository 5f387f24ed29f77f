package tests

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cairn/tests/cluster"
)

// TestJoinOnTwoAddresses starts a cluster by hand as an operator would on
// two machines: metad on 127.0.0.1, a blockd and a mount on 127.0.0.2,
// each joining with a token from `cairn admin -join-token`. A file copied
// through the mount reads back the same and fsck is HEALTHY. A blockd
// without a certificate or a token is refused with how to get one.
func TestJoinOnTwoAddresses(t *testing.T) {
	RequireFUSE(t)
	bin := cluster.Binary(t)
	dir := t.TempDir()
	metadDir, certs := filepath.Join(dir, "metad"), filepath.Join(dir, "admin")
	run := func(env []string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	start := func(name string, env []string, args ...string) *exec.Cmd {
		t.Helper()
		lf, err := os.Create(filepath.Join(dir, name+".log"))
		must(t, err)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = lf, lf
		must(t, cmd.Start())
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			lf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(lf.Name())
				t.Logf("----- %s -----\n%s", name, b)
			}
		})
		return cmd
	}
	waitJSON := func(path string, v any) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, v) == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not written within 30 s", path)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	start("metad", nil, "metad", "--data", metadDir, "--format", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--addr-file", filepath.Join(dir, "metad.addr"), "--heartbeat", "200ms")
	var maddr map[string]string
	waitJSON(filepath.Join(dir, "metad.addr"), &maddr)
	metad := maddr["rpc"]
	// The first admin certificate comes from the CA on metad's machine.
	if out, err := run(nil, "cert", "issue", "--ca", filepath.Join(metadDir, "trust"), "--role", "admin", "--name", "root", "--out", certs); err != nil {
		t.Fatalf("cairn cert issue: %v\n%s", err, out)
	}
	adminEnv := []string{"CAIRN_CERTS=" + certs, "CAIRN_METAD=" + metad}
	token := func(role string) string {
		t.Helper()
		out, err := run(adminEnv, "admin", "-join-token", "-role", role, "-ttl", "10m")
		if err != nil {
			t.Fatalf("cairn admin -join-token: %v\n%s", err, out)
		}
		return strings.TrimSpace(out)
	}

	// No certificate and no token: refused, saying how to get one.
	out, err := run(nil, "blockd", "--data", filepath.Join(dir, "lost"), "--metad", metad, "--listen", "127.0.0.2:0", "--http", "")
	if err == nil || !strings.Contains(out, "cairn admin -join-token --role blockd") {
		t.Fatalf("a blockd without a certificate or a token: %v\n%s", err, out)
	}

	bd := filepath.Join(dir, "blockd")
	start("blockd", []string{"CAIRN_JOIN=" + token("blockd")}, "blockd", "--data", bd, "--metad", metad,
		"--listen", "127.0.0.2:0", "--http", "127.0.0.2:0", "--heartbeat", "200ms", "--addr-file", filepath.Join(dir, "blockd.addr"))
	var baddr map[string]string
	waitJSON(filepath.Join(dir, "blockd.addr"), &baddr)
	if !strings.HasPrefix(baddr["data"], "127.0.0.2:") {
		t.Fatalf("the blockd serves on %s, want 127.0.0.2", baddr["data"])
	}
	for _, f := range []string{"key.pem", "cert.pem", "ca.pem"} {
		fi, err := os.Stat(filepath.Join(bd, "trust", f))
		if err != nil || f == "key.pem" && fi.Mode().Perm() != 0o600 {
			t.Fatalf("blockd credentials %s: %v", f, err)
		}
	}

	mnt := filepath.Join(dir, "mnt")
	must(t, os.MkdirAll(mnt, 0o755))
	start("mount", nil, "mount", metad, mnt, "--foreground", "-o", "join="+token("mount")+",certs="+filepath.Join(dir, "mountcerts"))
	t.Cleanup(func() { _ = exec.Command("fusermount3", "-u", "-z", mnt).Run() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ok, _ := cluster.IsFUSEMount(mnt); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the mount did not come up within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	data := bytes.Repeat([]byte("joined over TLS\n"), 70000)
	src := filepath.Join(dir, "src")
	must(t, os.WriteFile(src, data, 0o644))
	if out, err := exec.Command("cp", src, filepath.Join(mnt, "copy")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "copy"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back through the mount: %d bytes, %v; want %d", len(got), err, len(data))
	}
	out, err = run(adminEnv, "fsck", "/")
	if err != nil || cluster.LastLine(out) != cluster.HealthyLine("/") {
		t.Fatalf("fsck /: %v\n%s", err, out)
	}
}
