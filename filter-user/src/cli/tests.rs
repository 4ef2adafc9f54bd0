use super::*;
use crate::control::transaction::remove_stale_staged;

#[test]
fn targets() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(parse_target("192.0.2.1").unwrap(), (ip("192.0.2.1"), None));
    assert_eq!(
        parse_target("192.0.2.1:3478").unwrap(),
        (ip("192.0.2.1"), Some(3478))
    );
    assert_eq!(
        parse_target("2001:db8::1").unwrap(),
        (ip("2001:db8::1"), None)
    );
    assert_eq!(
        parse_target("[2001:db8::1]:443").unwrap(),
        (ip("2001:db8::1"), Some(443))
    );
    let e = parse_target("example.org").unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        e.to_string(),
        "`example.org` is not an address (IP, IP:PORT or [IPv6]:PORT)"
    );
}

#[test]
fn list_lines() {
    assert_eq!(
        line_prefix("  198.51.100.0/24 # x").map(|c| c.to_string()),
        Some("198.51.100.0/24".into())
    );
    assert_eq!(
        line_prefix("198.51.100.7/24").map(|c| c.to_string()),
        Some("198.51.100.0/24".into())
    );
    assert_eq!(line_prefix("# only a comment"), None);
    assert_eq!(line_prefix(""), None);
    assert!(parse_cidrs(&["10.0.0.1/8".into()], false).is_err());
    assert_eq!(
        parse_cidrs(&["10.0.0.1/8".into()], true).unwrap()[0].to_string(),
        "10.0.0.0/8"
    );
    assert!(check_category("allow").is_ok());
    assert_eq!(check_category("Bad").unwrap_err().exit_code(), 2);
}

#[test]
fn staged_files_keep_the_mode_and_are_swept() {
    use std::os::unix::fs::PermissionsExt as _;
    let d = std::env::temp_dir().join(format!("flowfilter-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let p = d.join("whatsapp.txt");
    std::fs::write(&p, "198.51.100.0/24\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    let s = Staged::new("whatsapp", &d, "203.0.113.0/24\n".into());
    assert_eq!(s.replacement().file, p.as_path());
    let staged = s.write().unwrap();
    assert_eq!(staged, d.join(".whatsapp.txt.staged"));
    // Written, but the list file is untouched until the commit.
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "198.51.100.0/24\n");
    assert_eq!(mode(&staged), 0o640);
    s.commit(&staged).unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "203.0.113.0/24\n");
    assert_eq!(mode(&p), 0o640);
    assert!(!staged.exists());
    // A staged file left by a killed writer goes; nothing else does.
    let left = Staged::new("telegram", &d, "192.0.2.0/24\n".into())
        .write()
        .unwrap();
    std::fs::write(d.join(".zoom.txt.tmp-1-2"), "").unwrap();
    remove_stale_staged(&d);
    assert!(!left.exists());
    let mut names: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".zoom.txt.tmp-1-2", "whatsapp.txt"]);
    std::fs::remove_dir_all(&d).unwrap();
}
