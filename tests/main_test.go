package tests

import (
	"os"
	"testing"

	"cairn/tests/cluster"
)

func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }
