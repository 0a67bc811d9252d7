package cluster_test

import (
	"path/filepath"
	"testing"

	"github.com/xarfd/xarfd/cluster/clustertest"
	"github.com/xarfd/xarfd/config"
)

// Three nodes share one route list (each listed, itself too), and one of
// them is down when the cluster first forms: the two others must form it
// (2 of 3 is a quorum). A route to itself counted as a peer made it 2 of
// 4, and the stream never got a leader.
func TestTwoOfThreeFormWithSharedRoutes(t *testing.T) {
	ports := clustertest.FreePorts(t, 3)
	var ms []*clustertest.Member
	for i, name := range []string{"n1", "n2"} {
		dir := t.TempDir()
		y := clustertest.Base + "data_dir: " + dir + "\n" + clustertest.YAML(name, ports[i], ports, 2, filepath.Join(dir, "nats"))
		cfg, err := config.Parse([]byte(y), name+".yaml")
		if err != nil {
			t.Fatal(err)
		}
		m, err := startNode(t, cfg, &config.Resources{})
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	roundTrip(t, ms[0], ms[1])
}
