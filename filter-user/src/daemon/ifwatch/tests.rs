use super::*;
use crate::daemon::netlink::XdpProg;

fn link(ifindex: Option<u32>) -> LinkState {
    LinkState {
        id: 10,
        program_id: 77,
        ifindex,
    }
}

fn dev(index: u32, progs: &[u32]) -> LinkInfo {
    LinkInfo {
        index,
        name: "eth0".into(),
        xdp: progs
            .iter()
            .map(|&id| XdpProg { id, mode: "skb" })
            .collect(),
    }
}

#[test]
fn judges_the_kernel_view() {
    assert_eq!(Health::judge(None, None), Health::Missing);
    assert_eq!(
        Health::judge(None, Some(&dev(3, &[]))),
        Health::NotLinked { ifindex: 3 }
    );
    let ok = Health::judge(Some(link(Some(3))), Some(&dev(3, &[77])));
    assert!(ok.attached(), "{ok:?}");
    assert_eq!(ok.ifindex(), Some(3));
    // Deleted: the kernel zeroes the link's ifindex.
    let gone = Health::judge(Some(link(Some(0))), None);
    assert_eq!(
        gone,
        Health::Defunct {
            link: link(Some(0)),
            now: None
        }
    );
    assert!(!gone.attached());
    // Deleted and re-created: a new index, the old link dead.
    assert_eq!(
        Health::judge(Some(link(Some(0))), Some(&dev(9, &[]))),
        Health::Defunct {
            link: link(Some(0)),
            now: Some(9)
        }
    );
    // Renamed away, another device took the name.
    assert_eq!(
        Health::judge(Some(link(Some(3))), Some(&dev(9, &[]))).label(),
        "elsewhere"
    );
    assert_eq!(
        Health::judge(Some(link(Some(3))), None).label(),
        "elsewhere"
    );
    // Same device, but not our program.
    let other = Health::judge(Some(link(Some(3))), Some(&dev(3, &[5])));
    assert_eq!(other.label(), "not running");
    assert!(other.describe("eth0").contains("XDP program [5]"));
    // A kernel that does not report the link's ifindex: the program
    // on the device decides.
    assert!(Health::judge(Some(link(None)), Some(&dev(3, &[77]))).attached());
    assert!(!Health::judge(Some(link(None)), Some(&dev(3, &[]))).attached());
    assert_eq!(Health::judge(Some(link(None)), None).label(), "defunct");
}

#[test]
fn waiting_interfaces_are_recorded_once() {
    let mut s = StateFile::new(Path::new("/sys/fs/bpf/x"));
    assert!(record_waiting(&mut s, "eth1", None));
    assert!(!record_waiting(&mut s, "eth1", None));
    assert_eq!(s.interfaces.len(), 1);
    assert_eq!(s.interfaces[0].mode, AttachedMode::NotAttached);
}
