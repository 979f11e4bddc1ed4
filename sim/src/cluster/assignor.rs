//! Client-side partition assignors of Kafka's classic consumer group protocol.
//!
//! In the classic protocol the group leader (a consumer) computes the assignment from every
//! member's subscription and hands it to the coordinator in SyncGroup. These functions are that
//! computation, so the simulated group hands out partitions the way a Java consumer group would:
//!
//! - [`range`]: Java's `RangeAssignor`, the eager protocol's classic default.
//! - [`cooperative_sticky`]: Java's `CooperativeStickyAssignor` (KIP-429), which keeps partitions
//!   where they are and revokes only the ones that move, over two rebalances.
//!
//! Both are pure and deterministic: they iterate only over sorted collections, so the same input
//! always gives the same output. Member ids must be unique within one call. Every member appears in
//! the result, possibly with an empty list, and every list is sorted.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use evsim_model::history::{TopicId, Tp};

/// What one member sends in its JoinGroup request, as the assignor sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The member id the coordinator gave it; assignors order members by it.
    pub member_id: String,
    /// The topics it subscribes to.
    pub topics: Vec<TopicId>,
    /// The partitions it currently owns (cooperative protocol; ignored by [`range`]).
    pub owned: Vec<Tp>,
    /// The generation in which it got `owned` (-1 when it owns nothing yet); settles conflicting
    /// claims after a member fell out of the group and came back with stale ownership.
    pub generation: i32,
}

/// A result map with an empty list for every member.
fn empty_result(members: &[Subscription]) -> BTreeMap<String, Vec<Tp>> {
    members.iter().map(|m| (m.member_id.clone(), Vec::new())).collect()
}

/// Every topic some member subscribes to, in order.
fn subscribed_topics(members: &[Subscription]) -> BTreeSet<TopicId> {
    members.iter().flat_map(|m| m.topics.iter().copied()).collect()
}

/// RangeAssignor (Java): per topic, partitions in order, members subscribed to it sorted by
/// member_id; n/m each, the first n%m members get one more, contiguous ranges.
///
/// Topics are handled independently, so with several topics the first members in id order can
/// end up with more partitions in total (the known imbalance of the range assignor).
pub fn range(members: &[Subscription], partitions: impl Fn(TopicId) -> u32) -> BTreeMap<String, Vec<Tp>> {
    let mut out = empty_result(members);
    for topic in subscribed_topics(members) {
        let mut subscribers: Vec<&str> =
            members.iter().filter(|m| m.topics.contains(&topic)).map(|m| m.member_id.as_str()).collect();
        subscribers.sort_unstable();
        subscribers.dedup();
        let n = partitions(topic);
        let m = subscribers.len() as u32; // at least 1: the topic came from a subscription
        let (per_member, extra) = (n / m, n % m);
        for (i, id) in subscribers.into_iter().enumerate() {
            let i = i as u32;
            let start = i * per_member + i.min(extra);
            let len = per_member + u32::from(i < extra);
            if let Some(list) = out.get_mut(id) {
                list.extend((start..start + len).map(|partition| Tp { topic, partition }));
            }
        }
    }
    for list in out.values_mut() {
        list.sort_unstable();
    }
    out
}

/// CooperativeStickyAssignor (KIP-429): a sticky, balanced target assignment, then the
/// cooperative step.
///
/// The target: with `n` partitions (of all subscribed topics) and `m` members, quotas are
/// `floor(n/m)` and, for `n % m` of the members, `ceil(n/m)`. Members keep what they own up to
/// their quota (the lowest partitions first; the `n % m` extra places go to owners with more
/// than `floor(n/m)`, in member_id order). A partition claimed by two members belongs to the
/// one with the higher generation; claims tied at the highest generation give no stickiness
/// (the partition is placed afresh and held back until every tied claimant has revoked it).
/// The remaining partitions go, in partition order, to the subscribed member with the fewest
/// partitions, ties by member_id. Partitions of topics with fewer subscribers are placed first,
/// so that members with narrower subscriptions are filled before the others.
///
/// The cooperative step: a partition that the target moves away from a member that still owns
/// it is left out of this assignment. The owner sees it missing, revokes it, and rejoins; the
/// follow-up rebalance hands it out. So no partition is ever given to a new member while another
/// may still be consuming it, and a membership change settles in two rounds.
///
/// With identical subscriptions (the usual case, Java's `constrainedAssign` path) the target is
/// balanced: member sizes differ by at most one. With differing subscriptions it is a valid
/// greedy assignment (every partition goes to a subscriber) that favours balance, not Java's
/// full `generalAssign` search.
///
/// Cost: O(partitions x members), fine for consumer groups of tens of members.
pub fn cooperative_sticky(members: &[Subscription], partitions: impl Fn(TopicId) -> u32) -> BTreeMap<String, Vec<Tp>> {
    let mut out = empty_result(members);

    // Members by index into `members`, in member_id order (the tie-break everywhere below).
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|&a, &b| members[a].member_id.cmp(&members[b].member_id));
    let subscribes = |i: usize, topic: TopicId| members[i].topics.contains(&topic);

    let sizes: BTreeMap<TopicId, u32> = subscribed_topics(members).into_iter().map(|t| (t, partitions(t))).collect();
    let exists = |tp: &Tp| sizes.get(&tp.topic).is_some_and(|&n| tp.partition < n);
    let all: Vec<Tp> =
        sizes.iter().flat_map(|(&topic, &n)| (0..n).map(move |partition| Tp { topic, partition })).collect();
    let active = order.iter().filter(|&&i| members[i].topics.iter().any(|t| sizes[t] > 0)).count();
    if all.is_empty() || active == 0 {
        return out;
    }

    // The current owners of each partition: the claimants of the highest generation.
    let mut owners: BTreeMap<Tp, (i32, Vec<usize>)> = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        let owned: BTreeSet<Tp> = m.owned.iter().copied().filter(exists).collect();
        for tp in owned {
            match owners.entry(tp) {
                Entry::Vacant(e) => {
                    e.insert((m.generation, vec![i]));
                }
                Entry::Occupied(mut e) => {
                    let (generation, who) = e.get_mut();
                    if m.generation > *generation {
                        *generation = m.generation;
                        *who = vec![i];
                    } else if m.generation == *generation {
                        who.push(i);
                    }
                }
            }
        }
    }

    // Sticky phase: each member keeps what it alone owns, up to its quota.
    let (min_quota, mut extra_places) = (all.len() / active, all.len() % active);
    let mut keep: Vec<Vec<Tp>> = vec![Vec::new(); members.len()];
    let sole_owners = owners.iter().filter_map(|(tp, (_, who))| match who[..] {
        [i] => Some((i, *tp)),
        _ => None,
    });
    for (i, tp) in sole_owners {
        if subscribes(i, tp.topic) {
            keep[i].push(tp); // in partition order: `owners` is sorted
        }
    }
    let mut target: BTreeMap<Tp, usize> = BTreeMap::new();
    let mut count = vec![0usize; members.len()];
    for &i in &order {
        for &tp in keep[i].iter().take(min_quota) {
            target.insert(tp, i);
            count[i] += 1;
        }
    }
    for &i in &order {
        if extra_places > 0 && keep[i].len() > min_quota {
            target.insert(keep[i][min_quota], i);
            count[i] += 1;
            extra_places -= 1;
        }
    }

    // Fill phase: the rest, narrowest topics first, each to the emptiest subscriber.
    let subscribers_of: BTreeMap<TopicId, usize> =
        sizes.keys().map(|&t| (t, order.iter().filter(|&&i| subscribes(i, t)).count())).collect();
    let mut pool: Vec<Tp> = all.iter().copied().filter(|tp| !target.contains_key(tp)).collect();
    pool.sort_by_key(|tp| (subscribers_of[&tp.topic], *tp));
    for tp in pool {
        // `min_by_key` returns the first of equal minima, and `order` is by member_id.
        let best = order.iter().copied().filter(|&i| subscribes(i, tp.topic)).min_by_key(|&i| count[i]);
        if let Some(i) = best {
            target.insert(tp, i);
            count[i] += 1;
        }
    }

    // Cooperative step: hold back partitions that another member still owns.
    for (tp, i) in target {
        let still_owned_elsewhere = owners.get(&tp).is_some_and(|(_, who)| who.iter().any(|&owner| owner != i));
        if !still_owned_elsewhere {
            out.get_mut(&members[i].member_id).expect("every member has a list").push(tp);
        }
    }
    out // lists are sorted: `target` iterates in partition order
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: TopicId = TopicId(0);
    const T1: TopicId = TopicId(1);

    fn tp(topic: TopicId, partition: u32) -> Tp {
        Tp { topic, partition }
    }

    fn tps(topic: TopicId, partitions: &[u32]) -> Vec<Tp> {
        partitions.iter().map(|&p| tp(topic, p)).collect()
    }

    fn sub(id: &str, topics: &[TopicId], owned: Vec<Tp>, generation: i32) -> Subscription {
        Subscription { member_id: id.to_string(), topics: topics.to_vec(), owned, generation }
    }

    fn six(_: TopicId) -> u32 {
        6
    }

    /// The next round's subscriptions: each member now owns what `result` gave it.
    fn feed_back(members: &[Subscription], result: &BTreeMap<String, Vec<Tp>>, generation: i32) -> Vec<Subscription> {
        members.iter().map(|m| Subscription { owned: result[&m.member_id].clone(), generation, ..m.clone() }).collect()
    }

    #[test]
    fn range_gives_contiguous_ranges_extra_to_first_members() {
        let members = [sub("b", &[T0], vec![], -1), sub("a", &[T0], vec![], -1)];
        let out = range(&members, |_| 3);
        assert_eq!(out["a"], tps(T0, &[0, 1]));
        assert_eq!(out["b"], tps(T0, &[2]));
    }

    #[test]
    fn range_handles_each_topic_separately() {
        let members = [
            sub("c", &[T1], vec![], -1),
            sub("a", &[T0, T1], vec![], -1),
            sub("b", &[T1, T0], vec![], -1),
            sub("idle", &[], vec![], -1),
        ];
        let out = range(&members, |t| if t == T0 { 3 } else { 2 });
        assert_eq!(out["a"], vec![tp(T0, 0), tp(T0, 1), tp(T1, 0)]);
        assert_eq!(out["b"], vec![tp(T0, 2), tp(T1, 1)]);
        assert_eq!(out["c"], vec![]);
        assert_eq!(out["idle"], vec![]);
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn sticky_first_assignment_is_balanced_round_robin() {
        let members = [sub("a", &[T0], vec![], -1), sub("b", &[T0], vec![], -1)];
        let out = cooperative_sticky(&members, six);
        assert_eq!(out["a"], tps(T0, &[0, 2, 4]));
        assert_eq!(out["b"], tps(T0, &[1, 3, 5]));
    }

    #[test]
    fn sticky_join_moves_only_what_it_must_over_two_rounds() {
        let members = [
            sub("a", &[T0], tps(T0, &[0, 2, 4]), 1),
            sub("b", &[T0], tps(T0, &[1, 3, 5]), 1),
            sub("c", &[T0], vec![], -1),
        ];
        // Round 1: a and b keep two each; 4 and 5 must move to c, but their owners still hold
        // them, so nobody gets them yet.
        let r1 = cooperative_sticky(&members, six);
        assert_eq!(r1["a"], tps(T0, &[0, 2]));
        assert_eq!(r1["b"], tps(T0, &[1, 3]));
        assert_eq!(r1["c"], vec![]);
        // Round 2: the owners have revoked them; c gets them, nothing else moves.
        let r2 = cooperative_sticky(&feed_back(&members, &r1, 2), six);
        assert_eq!(r2["a"], tps(T0, &[0, 2]));
        assert_eq!(r2["b"], tps(T0, &[1, 3]));
        assert_eq!(r2["c"], tps(T0, &[4, 5]));
    }

    #[test]
    fn sticky_leave_redistributes_in_one_round() {
        // c (which owned 4 and 5) has left the group.
        let members = [sub("a", &[T0], tps(T0, &[0, 2]), 2), sub("b", &[T0], tps(T0, &[1, 3]), 2)];
        let out = cooperative_sticky(&members, six);
        assert_eq!(out["a"], tps(T0, &[0, 2, 4]));
        assert_eq!(out["b"], tps(T0, &[1, 3, 5]));
    }

    #[test]
    fn sticky_extra_places_are_limited_to_n_mod_m() {
        // 6 partitions, 4 members: two members get 2, two get 1, even though three own 2.
        let members = [
            sub("a", &[T0], tps(T0, &[0, 1]), 1),
            sub("b", &[T0], tps(T0, &[2, 3]), 1),
            sub("c", &[T0], tps(T0, &[4, 5]), 1),
            sub("d", &[T0], vec![], -1),
        ];
        let r1 = cooperative_sticky(&members, six);
        assert_eq!(r1["a"], tps(T0, &[0, 1]));
        assert_eq!(r1["b"], tps(T0, &[2, 3]));
        assert_eq!(r1["c"], tps(T0, &[4]));
        assert_eq!(r1["d"], vec![]); // 5 is still c's
        let r2 = cooperative_sticky(&feed_back(&members, &r1, 2), six);
        assert_eq!(r2["d"], tps(T0, &[5]));
    }

    #[test]
    fn conflicting_claims_go_to_the_higher_generation() {
        let two = |_: TopicId| 2;
        // b's claim on 0 is newer: b keeps it, a's stale claim does not hold it back.
        let members = [sub("a", &[T0], tps(T0, &[0]), 2), sub("b", &[T0], tps(T0, &[0]), 3)];
        let out = cooperative_sticky(&members, two);
        assert_eq!(out["a"], tps(T0, &[1]));
        assert_eq!(out["b"], tps(T0, &[0]));
        // Equal generations: neither claim holds; 0 is withheld until both have revoked it.
        let members = [sub("a", &[T0], tps(T0, &[0]), 3), sub("b", &[T0], tps(T0, &[0]), 3)];
        let out = cooperative_sticky(&members, two);
        assert_eq!(out["a"], vec![]);
        assert_eq!(out["b"], tps(T0, &[1]));
    }

    #[test]
    fn topics_without_subscribers_are_not_assigned() {
        // T1 has partitions but nobody subscribes to it; a stale claim on it is dropped.
        let parts = |t: TopicId| if t == T0 { 2 } else { 4 };
        let members = [sub("a", &[T0], vec![tp(T1, 0)], 1), sub("b", &[T0], vec![], -1), sub("idle", &[], vec![], -1)];
        let out = cooperative_sticky(&members, parts);
        assert_eq!(out["a"], tps(T0, &[0]));
        assert_eq!(out["b"], tps(T0, &[1]));
        assert_eq!(out["idle"], vec![]);
        // No members at all, and members whose only topic has no partitions.
        assert!(cooperative_sticky(&[], parts).is_empty());
        let out = cooperative_sticky(&[sub("a", &[T0], vec![], -1)], |_| 0);
        assert_eq!(out["a"], vec![]);
        assert!(range(&[], parts).is_empty());
    }

    #[test]
    fn narrow_subscriptions_are_filled_first() {
        let parts = |t: TopicId| if t == T0 { 4 } else { 2 };
        let members = [sub("a", &[T0], vec![], -1), sub("b", &[T0, T1], vec![], -1)];
        let out = cooperative_sticky(&members, parts);
        assert_eq!(out["a"], tps(T0, &[0, 1, 2]));
        assert_eq!(out["b"], vec![tp(T0, 3), tp(T1, 0), tp(T1, 1)]);
    }

    /// Random joins and leaves: the cooperative invariants hold every round, and two rounds
    /// after each change the assignment is complete and balanced.
    #[test]
    fn random_membership_changes_keep_the_invariants() {
        let parts = |t: TopicId| if t == T0 { 7 } else { 5 };
        let mut x: u64 = 0x2545_f491_4f6c_dd1d; // xorshift64, test-local
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut members: Vec<Subscription> = vec![sub("m0", &[T0, T1], vec![], -1)];
        let mut generation = 0;
        for step in 0..200 {
            let id = format!("m{}", next() % 8);
            if let Some(pos) = members.iter().position(|m| m.member_id == id) {
                if members.len() > 1 {
                    members.remove(pos);
                }
            } else {
                members.push(sub(&id, &[T0, T1], vec![], -1));
            }
            for round in 0..2 {
                generation += 1;
                let out = cooperative_sticky(&members, parts);
                let mut seen = BTreeSet::new();
                for m in &members {
                    for p in &out[&m.member_id] {
                        assert!(seen.insert(*p), "step {step}: {p:?} assigned twice");
                        let gained = !m.owned.contains(p);
                        let held_elsewhere = members.iter().any(|o| o.member_id != m.member_id && o.owned.contains(p));
                        assert!(!(gained && held_elsewhere), "step {step}: {p:?} still owned");
                    }
                }
                if round == 1 {
                    assert_eq!(seen.len(), 12, "step {step}: incomplete after two rounds");
                    let sizes: Vec<usize> = out.values().map(Vec::len).collect();
                    let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                    assert!(hi - lo <= 1, "step {step}: unbalanced {sizes:?}");
                }
                members = feed_back(&members, &out, generation);
            }
        }
    }
}
