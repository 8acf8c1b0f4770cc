# shellcheck shell=bash
# Configuration files of the cluster bed (sourced by hack/cluster.sh): containerd's
# CRI, the loopback-only CNI network, the kubelet, the registry and its containerd
# mirror entry, the hosts file and the sysctls the kubelet checks. Each writer takes
# the paths and ports it needs as arguments and writes one file (or directory).

# containerd 1.6 (config version 2) with its CRI plugin: root, state and socket under
# <node dir>; no oom_score_adj writes the machine cannot make (restrict_oom_score_adj;
# the VM lacks CAP_SYS_RESOURCE and runc fails with "can't get final child's PID from
# pipe" otherwise); images only from the registries under <certs.d dir>.
write_containerd_config() { # <file> <node dir> <sandbox image> <certs.d dir>
  cat >"$1" <<EOT
version = 2
root = "$2/containerd/root"
state = "$2/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$2/containerd.sock"

[ttrpc]
  address = "$2/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$2/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$3"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$2/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$4"
EOT
}

# A CNI network of the `loopback` plugin only: the runtime reports NetworkReady (so
# the node becomes Ready), and no pod network or address exists. Pods use hostNetwork.
write_cni_config() { # <conf dir>
  cat >"$1/10-loopback-only.conflist" <<'EOT'
{
  "cniVersion": "0.4.0",
  "name": "loopback-only",
  "plugins": [{ "type": "loopback" }]
}
EOT
}

# KubeletConfiguration (kubelet.config.k8s.io/v1beta1) for one node: served on the
# node's address to clients with a certificate of <client CA> (the apiserver) only,
# authorized by the apiserver; cgroupfs driver under <cgroup root> on cgroup v1
# (failCgroupV1: false); no swap check; eviction thresholds low enough for a shared
# disk; images are never garbage collected mid-test.
write_kubelet_config() { # <file> <node dir> <node ip> <port> <cgroup root> <client CA> <resolv.conf>
  cat >"$1" <<EOT
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $3
port: $4
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $6
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
cgroupRoot: $5
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$2/containerd.sock
resolvConf: $7
volumePluginDir: $2/volume-plugins
serializeImagePulls: false
maxPods: 30
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
fileCheckFrequency: 20s
EOT
}

# CNCF Distribution's configuration (version 0.1): plain HTTP on 127.0.0.1:<port>,
# filesystem storage, deletes allowed.
write_registry_config() { # <file> <port> <storage dir>
  cat >"$1" <<EOT
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $3
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$2
EOT
}

# containerd's registry host configuration (hosts.toml) for the loopback registry:
# plain HTTP, pull and resolve.
write_registry_hosts() { # <certs.d dir> <host:port>
  mkdir -p "$1/$2"
  cat >"$1/$2/hosts.toml" <<EOT
server = "http://$2"

[host."http://$2"]
  capabilities = ["pull", "resolve"]
EOT
}

write_hosts_file() { # <file>: localhost and the node names
  {
    echo "127.0.0.1 localhost"
    echo "::1 localhost ip6-localhost ip6-loopback"
    local n
    for n in "${nodes[@]}"; do echo "$(node_ip "$n") $(node_name "$n")"; done
  } >"$1"
}

# The kernel tunables the kubelet sets at start-up unless they already have its
# values (pkg/kubelet/cm/container_manager_linux.go, setupKernelTunables). They are
# not namespaced, so the kubelet is shown files holding its values, bind-mounted
# over the host's in the bed's mount namespace; the host keeps its own.
bind_kubelet_sysctls() { # <dir for the value files>
  local key want
  mkdir -p "$1"
  while read -r key want; do
    [[ "$(cat "/proc/sys/$key")" == "$want" ]] && continue
    echo "$want" >"$1/${key//\//.}"
    mount --bind "$1/${key//\//.}" "/proc/sys/$key"
  done <<'EOT'
vm/overcommit_memory 1
vm/panic_on_oom 0
kernel/panic 10
kernel/panic_on_oops 1
kernel/keys/root_maxkeys 1000000
kernel/keys/root_maxbytes 25000000
EOT
}
