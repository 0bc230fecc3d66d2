package bus

import (
	"fmt"
	"slices"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/godwit/godwit/events/subject"
)

// Access lists who may connect to the embedded server besides the OMA's
// internal user, each by NKey public key (a string starting with "U").
//
//   - A VMA may publish only on subjects carrying its own id, read its own
//     commands and discover requests through its durable consumers, and
//     receive replies on its own inbox prefix (subject.InboxPrefix).
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

// users builds the server's NKey users: the OMA (everything), each VMA and
// each observer.
func (a Access) users(omaKey string) ([]*server.NkeyUser, error) {
	users := []*server.NkeyUser{{Nkey: omaKey}}
	seen := map[string]bool{omaKey: true}
	add := func(who, key string, p *server.Permissions) error {
		if !nkeys.IsValidPublicUserKey(key) {
			return fmt.Errorf("%s: %q is not an nkey user public key", who, key)
		}
		if seen[key] {
			return fmt.Errorf("%s: key %s is given twice", who, key)
		}
		seen[key] = true
		users = append(users, &server.NkeyUser{Nkey: key, Permissions: p})
		return nil
	}
	ids := make([]string, 0, len(a.VMAs))
	for id := range a.VMAs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		p, err := vmaPermissions(id)
		if err != nil {
			return nil, err
		}
		if err := add("vma "+id, a.VMAs[id], p); err != nil {
			return nil, err
		}
	}
	obs := observerPermissions()
	for i, key := range a.Observers {
		if err := add(fmt.Sprintf("observer %d", i), key, obs); err != nil {
			return nil, err
		}
	}
	for i, key := range a.Admins {
		if err := add(fmt.Sprintf("admin %d", i), key, nil); err != nil {
			return nil, err
		}
	}
	return users, nil
}

// vmaPermissions confines a VMA to its own subjects and consumers.
func vmaPermissions(id string) (*server.Permissions, error) {
	pub, err := subject.VMAPublish(id)
	if err != nil {
		return nil, err
	}
	sub, err := subject.VMASubscribe(id)
	if err != nil {
		return nil, err
	}
	inbox, err := subject.InboxPrefix(id)
	if err != nil {
		return nil, err
	}
	durable := VMADurable(id)
	for _, stream := range []string{StreamCommands, StreamDiscovery} { // read through its durables
		pub = append(pub,
			"$JS.API.CONSUMER.INFO."+stream+"."+durable,
			"$JS.API.CONSUMER.MSG.NEXT."+stream+"."+durable,
			"$JS.ACK."+stream+"."+durable+".>",
		)
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: append(sub, inbox+".>")},
	}, nil
}

// observerPermissions allows subscribing to godwit.> live and to the
// observer's inbox, and publishing only JetStream API requests under
// ObserverAPIPrefix, which the server's gate checks and forwards.
func observerPermissions() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{ObserverAPIPrefix + ".>"}},
		Subscribe: &server.SubjectPermission{Allow: []string{subject.All, observerInbox + ">"}},
	}
}
