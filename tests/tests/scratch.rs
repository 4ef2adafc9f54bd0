use filter_common::pktbuild::{self, rtp, stun};
use flowfilter_tests::{lists, load};
#[test]
fn micro() {
    let l = lists(&[("whatsapp", "198.51.100.0/24\n")], "");
    let f = load(&l, &[]);
    let st = stun(0x0001, [1; 12], &[(0x0006, b"user:pass")]);
    let call = pktbuild::udp4([192, 0, 2, 1], 40000, [198, 51, 100, 7], 3478, &st);
    f.run(&call).unwrap();
    let media = pktbuild::udp4(
        [192, 0, 2, 1],
        40000,
        [198, 51, 100, 7],
        3478,
        &rtp(111, 5, 0, 77, 160),
    );
    let nomatch = pktbuild::udp4(
        [192, 0, 2, 1],
        40001,
        [203, 0, 113, 7],
        3478,
        &rtp(111, 5, 0, 77, 160),
    );
    let tcp = pktbuild::tcp4([192, 0, 2, 1], 40001, [203, 0, 113, 7], 443, &[0; 100]);
    f.run(&nomatch).unwrap();
    for _ in 0..3 {
        for (n, fr) in [
            ("tracked call media", &media),
            ("cached nomatch", &nomatch),
            ("tcp", &tcp),
        ] {
            let (v, ns) = f.run_timed(fr, 200_000).unwrap();
            eprintln!("{n}: verdict {v} {ns:.1} ns");
        }
    }
}
