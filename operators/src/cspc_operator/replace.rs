//! Disk replacement, cspc side. A block device that left a pool spec's data raid
//! group while another one took its place is a replacement: the new device is claimed with
//! `openebs.io/bd-predecessor=<old>` ([`super::bdc::claim`]) and, once the claim is bound, the
//! CSPI's raid group entry is renamed old → new. The pool manager then runs `zpool replace`.

use cstor_api::cstor::{CStorPoolInstance, PoolSpec};

/// One block device of a CSPI data raid group to be replaced by another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replacement {
    /// Index of the CSPI data raid group.
    pub group: usize,
    pub old: String,
    pub new: String,
}

/// Replacements the pool spec asks of `cspi`: for a spec raid group and a CSPI raid group of
/// the same size that differ in exactly one block device each, where the CSPI's device appears
/// nowhere in the pool spec (otherwise it is a move or an expansion, not a replacement) and the
/// spec's device is in no CSPI raid group.
pub fn pending(cspi: &CStorPoolInstance, pool: &PoolSpec) -> Vec<Replacement> {
    let in_spec: Vec<&str> = pool
        .data_raid_groups
        .iter()
        .flat_map(|g| &g.block_devices)
        .map(|b| b.block_device_name.as_str())
        .collect();
    let in_cspi: Vec<&str> = cspi
        .spec
        .data_raid_groups
        .iter()
        .flat_map(|g| &g.block_devices)
        .map(|b| b.block_device_name.as_str())
        .collect();
    if in_cspi.iter().all(|b| in_spec.contains(b)) {
        return Vec::new();
    }
    let mut out: Vec<Replacement> = Vec::new();
    for g in &pool.data_raid_groups {
        let spec_names: Vec<&str> = g
            .block_devices
            .iter()
            .map(|b| b.block_device_name.as_str())
            .collect();
        for (i, cg) in cspi.spec.data_raid_groups.iter().enumerate() {
            if cg.block_devices.len() != spec_names.len() || out.iter().any(|r| r.group == i) {
                continue;
            }
            let cspi_names: Vec<&str> = cg
                .block_devices
                .iter()
                .map(|b| b.block_device_name.as_str())
                .collect();
            let gone: Vec<&str> = cspi_names
                .iter()
                .copied()
                .filter(|b| !spec_names.contains(b))
                .collect();
            let came: Vec<&str> = spec_names
                .iter()
                .copied()
                .filter(|b| !cspi_names.contains(b))
                .collect();
            if let ([old], [new]) = (gone.as_slice(), came.as_slice())
                && !in_spec.contains(old)
                && !in_cspi.contains(new)
            {
                out.push(Replacement {
                    group: i,
                    old: (*old).to_owned(),
                    new: (*new).to_owned(),
                });
                break;
            }
        }
    }
    out
}

/// Renames old → new in the CSPI for every replacement whose new device `usable` says is bound
/// to a claim of this CSPC. Returns the replacements applied.
pub fn apply(
    cspi: &mut CStorPoolInstance,
    pending: &[Replacement],
    usable: &std::collections::BTreeMap<String, bool>,
) -> Vec<Replacement> {
    let mut done = Vec::new();
    for r in pending {
        if usable.get(&r.new) != Some(&true) {
            continue;
        }
        let Some(group) = cspi.spec.data_raid_groups.get_mut(r.group) else {
            continue;
        };
        if let Some(b) = group
            .block_devices
            .iter_mut()
            .find(|b| b.block_device_name == r.old)
        {
            // devLink stays the old path until the pool manager reports the new one.
            b.block_device_name = r.new.clone();
            done.push(r.clone());
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use cstor_api::cstor::{
        CStorPoolInstanceBlockDevice, CStorPoolInstanceSpec, PoolConfig, RaidGroup, RaidGroupType,
    };

    fn group(bds: &[&str]) -> RaidGroup {
        RaidGroup {
            block_devices: bds
                .iter()
                .map(|b| CStorPoolInstanceBlockDevice::named(*b))
                .collect(),
            ..Default::default()
        }
    }

    fn cspi(groups: Vec<RaidGroup>) -> CStorPoolInstance {
        CStorPoolInstance::namespaced(
            "p",
            "ns",
            CStorPoolInstanceSpec {
                data_raid_groups: groups,
                ..Default::default()
            },
        )
    }

    fn pool(raid: RaidGroupType, groups: Vec<RaidGroup>) -> PoolSpec {
        PoolSpec {
            data_raid_groups: groups,
            pool_config: Some(PoolConfig {
                data_raid_group_type: raid,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn mirror_disk_swapped_is_a_replacement() {
        let c = cspi(vec![group(&["a", "b"]), group(&["c", "d"])]);
        let p = pool(
            RaidGroupType::Mirror,
            vec![group(&["a", "b"]), group(&["c", "x"])],
        );
        assert_eq!(
            pending(&c, &p),
            vec![Replacement {
                group: 1,
                old: "d".into(),
                new: "x".into()
            }]
        );
    }

    #[test]
    fn new_raid_group_or_new_stripe_disk_is_not_a_replacement() {
        let c = cspi(vec![group(&["a"])]);
        let p = pool(RaidGroupType::Stripe, vec![group(&["a"]), group(&["b"])]);
        assert!(pending(&c, &p).is_empty());
        let p = pool(RaidGroupType::Stripe, vec![group(&["a", "b"])]);
        assert!(pending(&c, &p).is_empty());
    }

    #[test]
    fn single_disk_stripe_group_swapped_is_a_replacement() {
        let c = cspi(vec![group(&["a"]), group(&["b"])]);
        let p = pool(RaidGroupType::Stripe, vec![group(&["a"]), group(&["z"])]);
        let reps = pending(&c, &p);
        assert_eq!(
            reps,
            vec![Replacement {
                group: 1,
                old: "b".into(),
                new: "z".into()
            }]
        );
        let mut c2 = c.clone();
        let usable = [("z".to_string(), false)].into();
        assert!(apply(&mut c2, &reps, &usable).is_empty(), "unbound claim");
        assert_eq!(c2, c);
        let usable = [("z".to_string(), true)].into();
        assert_eq!(apply(&mut c2, &reps, &usable).len(), 1);
        assert_eq!(
            c2.spec.data_raid_groups[1].block_devices[0].block_device_name,
            "z"
        );
        assert!(
            pending(&c2, &p).is_empty(),
            "applied replacement is not pending any more"
        );
    }

    #[test]
    fn two_disks_swapped_in_one_group_is_not_a_replacement() {
        let c = cspi(vec![group(&["a", "b"])]);
        let p = pool(RaidGroupType::Mirror, vec![group(&["x", "y"])]);
        assert!(pending(&c, &p).is_empty());
    }
}
