package cluster

// The controller's decisions as pure functions over metadata state:
// replica assignment, leader election and the effect of fencing or
// unfencing a broker on partition leadership and ISRs. The quorum's state
// machine (state.go) calls them while applying commands, so every voter
// reaches the same result; the assignment, which draws a random start, is
// computed by the controller before it proposes the command.

import (
	"fmt"
	"slices"
	"sort"
)

// NoLeader is a partition's leader while none of its in-sync replicas can
// lead (all fenced).
const NoLeader int32 = -1

// AssignReplicas places partitions replicas each on the given brokers,
// Kafka style: leaders round-robin from start, followers shifted so that
// one broker's load spreads over all the others, and with racks a
// partition's replicas span as many racks as there are (the broker list is
// walked in rack-alternating order). The first replica of each partition is
// its preferred leader. It fails when rf exceeds the number of brokers.
func AssignReplicas(brokers []Broker, partitions, rf, start int) ([][]int32, error) {
	n := len(brokers)
	if rf <= 0 || rf > n {
		return nil, fmt.Errorf("replication factor %d with %d available brokers", rf, n)
	}
	if partitions <= 0 {
		return nil, fmt.Errorf("partition count %d", partitions)
	}
	if start < 0 {
		start = -start
	}
	order := rackAlternating(brokers)
	racks := map[string]bool{}
	for _, b := range order {
		racks[b.Rack] = true
	}
	rackAware := len(racks) > 1
	out := make([][]int32, partitions)
	for i := 0; i < partitions; i++ {
		first := (start + i) % n
		shift := (start + i/n) % max(n-1, 1)
		if !rackAware {
			reps := []int32{order[first].ID}
			for j := 0; j < rf-1; j++ {
				reps = append(reps, order[(first+1+(shift+j)%(n-1))%n].ID)
			}
			out[i] = reps
			continue
		}
		// Walk from the leader, taking brokers of racks not used yet until
		// every rack has a replica, then any broker not used yet.
		reps := []int32{order[first].ID}
		used := map[int32]bool{order[first].ID: true}
		usedRack := map[string]bool{order[first].Rack: true}
		for pass := 0; pass < 2 && len(reps) < rf; pass++ {
			for k := 0; k < n && len(reps) < rf; k++ {
				b := order[(first+1+shift+k)%n]
				if used[b.ID] || pass == 0 && usedRack[b.Rack] {
					continue
				}
				reps = append(reps, b.ID)
				used[b.ID] = true
				usedRack[b.Rack] = true
			}
			clear(usedRack)
		}
		out[i] = reps
	}
	return out, nil
}

// rackAlternating orders brokers by id within each rack and then takes one
// from each rack in turn (racks in name order), as Kafka's rack-aware
// assignment does.
func rackAlternating(brokers []Broker) []Broker {
	byRack := map[string][]Broker{}
	var racks []string
	for _, b := range brokers {
		if _, ok := byRack[b.Rack]; !ok {
			racks = append(racks, b.Rack)
		}
		byRack[b.Rack] = append(byRack[b.Rack], b)
	}
	sort.Strings(racks)
	for _, r := range racks {
		bs := byRack[r]
		sort.Slice(bs, func(i, j int) bool { return bs[i].ID < bs[j].ID })
	}
	out := make([]Broker, 0, len(brokers))
	for i := 0; len(out) < len(brokers); i++ {
		for _, r := range racks {
			if i < len(byRack[r]) {
				out = append(out, byRack[r][i])
			}
		}
	}
	return out
}

// ElectLeader chooses a partition's leader: the first replica, in replica
// order (so the preferred leader when it can), that is in the ISR and
// usable. With unclean set and no such replica, the first usable replica
// outside the ISR is taken (unclean.leader.election.enable; it may lose
// acknowledged records). NoLeader when there is none.
func ElectLeader(p Partition, usable func(id int32) bool, unclean bool) int32 {
	for _, r := range p.Replicas {
		if slices.Contains(p.ISR, r) && usable(r) {
			return r
		}
	}
	if unclean {
		for _, r := range p.Replicas {
			if usable(r) {
				return r
			}
		}
	}
	return NoLeader
}

// withLeader returns p led by leader: a new leader (or none) bumps the
// leader epoch, and any change bumps the partition epoch. An unclean
// leader becomes the whole ISR.
func withLeader(p Partition, leader int32) Partition {
	if leader == p.Leader {
		return p
	}
	p.Leader = leader
	p.LeaderEpoch++
	p.PartitionEpoch++
	if leader != NoLeader && !slices.Contains(p.ISR, leader) {
		p.ISR = []int32{leader}
	}
	return p
}

// FenceReplica is a partition after broker id was fenced: it leaves the
// ISR unless it is the last member (so that the partition can be led again
// by it, without data loss, once it returns), and leadership moves to
// another usable in-sync replica, or to none.
func FenceReplica(p Partition, id int32, usable func(int32) bool, unclean bool) Partition {
	if !slices.Contains(p.Replicas, id) {
		return p
	}
	q := p.clone()
	if len(q.ISR) > 1 && slices.Contains(q.ISR, id) {
		q.ISR = slices.DeleteFunc(q.ISR, func(r int32) bool { return r == id })
		q.PartitionEpoch++
	}
	if q.Leader == id || q.Leader == NoLeader {
		q = withLeader(q, ElectLeader(q, func(r int32) bool { return r != id && usable(r) }, unclean))
	}
	return q
}

// UnfenceReplica is a partition after broker id came back: a partition
// without a leader is led by it when it is in the ISR (or, unclean, a
// replica at all).
func UnfenceReplica(p Partition, id int32, usable func(int32) bool, unclean bool) Partition {
	if !slices.Contains(p.Replicas, id) {
		return p
	}
	return ElectIfLeaderless(p, usable, unclean)
}

// ElectIfLeaderless is a partition with a leader elected if it had none
// (unchanged if none can lead).
func ElectIfLeaderless(p Partition, usable func(int32) bool, unclean bool) Partition {
	if p.Leader != NoLeader {
		return p
	}
	return withLeader(p.clone(), ElectLeader(p, usable, unclean))
}

// PreferredLeader is a partition after preferred-leader election: led by
// its first replica when that one is in the ISR and usable; unchanged
// otherwise.
func PreferredLeader(p Partition, usable func(int32) bool) Partition {
	if len(p.Replicas) == 0 {
		return p
	}
	pref := p.Replicas[0]
	if p.Leader == pref || !slices.Contains(p.ISR, pref) || !usable(pref) {
		return p
	}
	return withLeader(p.clone(), pref)
}

func (p Partition) clone() Partition {
	p.Replicas = slices.Clone(p.Replicas)
	p.ISR = slices.Clone(p.ISR)
	return p
}
