package bus

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/godwit/godwit/events/subject"
)

// AccountOMA is the NATS account of the OMA, its observers and admins: the
// only account with JetStream.
const AccountOMA = "GODWIT"

// VMAAccount returns the name of the NATS account of the VMA with the given
// id (which must pass subject.ValidID): every VMA lives in an account of
// its own, without JetStream.
func VMAAccount(vmaID string) string { return "VMA_" + vmaID }

// Access lists who may connect to the embedded server besides the OMA's
// internal user, each by NKey public key (a string starting with "U").
//
//   - A VMA lives in its own account (VMAAccount), which has no JetStream
//     and sees nothing of the OMA's account but what is imported into it,
//     each import a service whose replies the server rewrites: its own
//     event subjects (stored by the OMA's streams, the PubAck routed back),
//     its export requests, and the pulls and acks of its own durable
//     consumers. No JetStream API call reaches the OMA's account from a VMA,
//     not even through a reply subject: a reply such as
//     '$JS.API.STREAM.PURGE.COMMANDS' stays in the VMA's account, where
//     nothing answers it.
//   - An observer may subscribe to godwit.> live and reach JetStream only
//     through ObserverAPIPrefix, whose gate forwards reads: list and inspect
//     streams, get messages, replay through ephemeral pull consumers. It may
//     not publish events, delete or purge anything, create or pull from a
//     durable, or have anything delivered but into its inbox.
//   - An admin may do everything the OMA may: for operators' tools and
//     benchmarks, never for a VMA.
type Access struct {
	// VMAs maps a VMA id to its public key.
	VMAs map[string]string
	// Observers are the public keys of read-only users.
	Observers []string
	// Admins are the public keys of users with full access.
	Admins []string
}

// equal reports whether a and b grant the same access.
func (a Access) equal(b Access) bool {
	return maps.Equal(a.VMAs, b.VMAs) && slices.Equal(a.Observers, b.Observers) && slices.Equal(a.Admins, b.Admins)
}

// The server configuration Access is written into, in the JSON form that
// nats-server's configuration parser reads.
type (
	serverConf struct {
		Accounts map[string]*accountConf `json:"accounts"`
	}
	accountConf struct {
		JetStream string       `json:"jetstream,omitempty"`
		Users     []userConf   `json:"users"`
		Exports   []exportConf `json:"exports,omitempty"`
		Imports   []importConf `json:"imports,omitempty"`
	}
	userConf struct {
		Nkey        string     `json:"nkey"`
		Permissions *permsConf `json:"permissions,omitempty"`
	}
	permsConf struct {
		Publish   allowConf `json:"publish"`
		Subscribe allowConf `json:"subscribe"`
	}
	allowConf struct {
		Allow []string `json:"allow"`
	}
	exportConf struct {
		Service      string   `json:"service"`
		ResponseType string   `json:"response_type,omitempty"`
		Accounts     []string `json:"accounts"`
	}
	importConf struct {
		Service importRef `json:"service"`
	}
	importRef struct {
		Account string `json:"account"`
		Subject string `json:"subject"`
	}
)

// config writes a as nats-server configuration: the OMA's account with
// JetStream, the OMA (everything), each observer and admin, and an account
// per VMA with its user and its imports.
//
// The VMAs named in bare get their account only, empty: see Server.SetAccess.
func (a Access) config(omaKey string, bare map[string]bool) (string, error) {
	oma := &accountConf{JetStream: "enabled", Users: []userConf{{Nkey: omaKey}}}
	conf := serverConf{Accounts: map[string]*accountConf{AccountOMA: oma}}
	seen := map[string]bool{omaKey: true}
	check := func(who, key string) error {
		if !nkeys.IsValidPublicUserKey(key) {
			return fmt.Errorf("%s: %q is not an nkey user public key", who, key)
		}
		if seen[key] {
			return fmt.Errorf("%s: key %s is given twice", who, key)
		}
		seen[key] = true
		return nil
	}
	ids := make([]string, 0, len(a.VMAs))
	for id := range a.VMAs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if err := check("vma "+id, a.VMAs[id]); err != nil {
			return "", err
		}
		g, err := vmaGrants(id)
		if err != nil {
			return "", err
		}
		acc := VMAAccount(id)
		if bare[id] {
			conf.Accounts[acc] = &accountConf{Users: []userConf{}}
			continue
		}
		vma := &accountConf{Users: []userConf{{Nkey: a.VMAs[id], Permissions: &permsConf{
			Publish:   allowConf{Allow: append(slices.Clone(g.services), g.pulls...)},
			Subscribe: allowConf{Allow: g.subscribe},
		}}}}
		for _, s := range g.services {
			oma.Exports = append(oma.Exports, exportConf{Service: s, Accounts: []string{acc}})
			vma.Imports = append(vma.Imports, importConf{Service: importRef{Account: AccountOMA, Subject: s}})
		}
		for _, s := range g.pulls { // a pull is answered by many messages
			oma.Exports = append(oma.Exports, exportConf{Service: s, ResponseType: "stream", Accounts: []string{acc}})
			vma.Imports = append(vma.Imports, importConf{Service: importRef{Account: AccountOMA, Subject: s}})
		}
		conf.Accounts[acc] = vma
	}
	obs := &permsConf{
		Publish:   allowConf{Allow: []string{ObserverAPIPrefix + ".>"}},
		Subscribe: allowConf{Allow: []string{subject.All, observerInbox + ">"}},
	}
	for i, key := range a.Observers {
		if err := check(fmt.Sprintf("observer %d", i), key); err != nil {
			return "", err
		}
		oma.Users = append(oma.Users, userConf{Nkey: key, Permissions: obs})
	}
	for i, key := range a.Admins {
		if err := check(fmt.Sprintf("admin %d", i), key); err != nil {
			return "", err
		}
		oma.Users = append(oma.Users, userConf{Nkey: key})
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // '>' stays '>': the parser knows no \u escapes
	if err := enc.Encode(conf); err != nil {
		return "", fmt.Errorf("encode nats access: %w", err)
	}
	return b.String(), nil
}

// grants is what a VMA may do in its account.
type grants struct {
	services  []string // published into the OMA's account, one answer at most
	pulls     []string // pull requests, answered by many messages
	subscribe []string
}

// vmaGrants confines a VMA to its own subjects and durable consumers.
func vmaGrants(id string) (grants, error) {
	pub, err := subject.VMAPublish(id)
	if err != nil {
		return grants{}, err
	}
	sub, err := subject.VMASubscribe(id)
	if err != nil {
		return grants{}, err
	}
	inbox, err := subject.InboxPrefix(id)
	if err != nil {
		return grants{}, err
	}
	g := grants{services: pub, subscribe: append(sub, inbox+".>")}
	durable := VMADurable(id)
	for _, stream := range []string{StreamCommands, StreamDiscovery} { // read through its durables
		g.pulls = append(g.pulls, pullSubject(stream, durable))
		g.services = append(g.services, "$JS.ACK."+stream+"."+durable+".>")
	}
	return g, nil
}

// pullSubject is the JetStream API subject of a pull from a consumer.
func pullSubject(stream, consumer string) string {
	return "$JS.API.CONSUMER.MSG.NEXT." + stream + "." + consumer
}
