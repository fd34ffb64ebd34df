//! wsgate-loadgen: placeholder until the load generator lands (issue 4).

fn main() {
    eprintln!("wsgate-loadgen is not built yet");
    std::process::exit(2);
}
