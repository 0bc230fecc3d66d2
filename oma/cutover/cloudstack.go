package cutover

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
)

// cloudStackCommands returns the CloudMonkey (cmk) commands that import
// t's disks into CloudStack: importVm for the root disk (importsource
// shared, from the primary storage pool t.Dir is mounted from), then
// importVolume and attachVolume for each data disk. The ids CloudStack
// gives (zone, cluster, pool, offerings, network) are left for the
// operator, as <placeholders>.
func cloudStackCommands(vm events.VM, t store.CutoverTarget) []string {
	var out []string
	name := safeName(vm.Name)
	root := t.Root
	if root == "" {
		root = t.Dir
	}
	for _, d := range t.Disks {
		file, err := filepath.Rel(root, d.Path)
		if err != nil || strings.HasPrefix(file, "..") {
			file = filepath.Base(d.Path)
		}
		if d.Root {
			nics := make([]string, 0, len(vm.Networks))
			for i, n := range vm.Networks {
				nics = append(nics, fmt.Sprintf("nicnetworklist[%d].nic=nic%d nicnetworklist[%d].network=<network id for %s, mac %s>",
					i, i, i, n.Network, strings.ToLower(n.MACAddress)))
			}
			cmd := fmt.Sprintf("cmk import vm name=%s displayname=%q importsource=shared hypervisor=kvm zoneid=<zone id> clusterid=<cluster id> storageid=<primary storage id of %s> diskpath=%s serviceofferingid=<offering with %d CPUs and %d MiB>",
				name, vm.Name, root, file, max(vm.NumCPU, 1), vm.MemoryMB)
			if len(nics) > 0 {
				cmd += " " + strings.Join(nics, " ")
			}
			out = append(out, cmd)
			continue
		}
		out = append(out,
			fmt.Sprintf("cmk import volume name=%s-disk-%d storageid=<primary storage id of %s> path=%s diskofferingid=<disk offering id>", name, d.Key, root, file),
			fmt.Sprintf("cmk attach volume id=<id of volume %s-disk-%d> virtualmachineid=<id of vm %s>", name, d.Key, name))
	}
	return out
}
