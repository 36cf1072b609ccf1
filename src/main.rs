fn main() {
    print!("{}", sidecar_watch::api::crds_yaml().unwrap());
}
