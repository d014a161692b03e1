//! Dependent jobs: the job graph's pure parts — cycle detection and readiness.
//!
//! A child runs once every parent has succeeded (or failed with `soft_error`) since the child's
//! last dependency-triggered run; the store keeps that progress so a restart never loses it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Find a cycle in `parents` (child → its parents). Returns the cycle as a path that starts and
/// ends with the same job (e.g. `[a, b, a]`), or None.
pub fn find_cycle(parents: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = HashMap::new();
    for start in parents.keys() {
        if marks.contains_key(start.as_str()) {
            continue;
        }
        // Iterative DFS: (node, index of the next parent to visit).
        let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        marks.insert(start.as_str(), Mark::Visiting);
        while let Some((node, i)) = stack.pop() {
            let ps = parents.get(node).map(Vec::as_slice).unwrap_or(&[]);
            if i < ps.len() {
                stack.push((node, i + 1));
                let p = ps[i].as_str();
                match marks.get(p) {
                    Some(Mark::Visiting) => {
                        let from = stack.iter().position(|(n, _)| *n == p).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            stack[from..].iter().map(|(n, _)| (*n).to_owned()).collect();
                        cycle.push(p.to_owned());
                        return Some(cycle);
                    }
                    Some(Mark::Done) => {}
                    None => {
                        marks.insert(p, Mark::Visiting);
                        stack.push((p, 0));
                    }
                }
            } else {
                marks.insert(node, Mark::Done);
            }
        }
    }
    None
}

/// Whether every parent has reported since the child's last run.
pub fn ready(parents: &[String], reported: &BTreeSet<String>) -> bool {
    !parents.is_empty() && parents.iter().all(|p| reported.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(c, ps)| {
                (
                    (*c).to_owned(),
                    ps.iter().map(|p| (*p).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn cycles() {
        assert_eq!(find_cycle(&g(&[("b", &["a"]), ("c", &["a", "b"])])), None);
        let c = find_cycle(&g(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"])])).unwrap();
        assert_eq!(c.first(), c.last());
        assert_eq!(c.len(), 4);
        assert_eq!(find_cycle(&g(&[("a", &["a"])])).unwrap(), ["a", "a"]);
        // A diamond is not a cycle.
        assert_eq!(
            find_cycle(&g(&[("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])])),
            None
        );
    }

    #[test]
    fn readiness() {
        let ps = vec!["a".to_owned(), "b".to_owned()];
        let mut r = BTreeSet::new();
        assert!(!ready(&ps, &r));
        r.insert("a".to_owned());
        assert!(!ready(&ps, &r));
        r.insert("b".to_owned());
        assert!(ready(&ps, &r));
        assert!(!ready(&[], &r));
    }
}
