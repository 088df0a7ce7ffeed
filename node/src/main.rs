//! `hearth`: the Hearth node and its command line. See the `hearth-node` library for the code.

fn main() -> std::process::ExitCode {
    hearth_node::main_with(std::env::args_os())
}
