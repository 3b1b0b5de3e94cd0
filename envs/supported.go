package envs

// The Compose keys berth turns into containers (engine/ implements each).
// Anything else is a validation problem naming the key: a setting berth
// would silently drop is worse than one it refuses.
var (
	supportedServiceKeys = map[string]bool{
		"image": true, "command": true, "entrypoint": true, "environment": true,
		"env_file": true, "working_dir": true, "user": true, "labels": true,
		"ports": true, "expose": true, "volumes": true, "tmpfs": true, "networks": true,
		"healthcheck": true, "restart": true, "stop_signal": true,
		"stop_grace_period": true, "init": true, "read_only": true,
		"extra_hosts": true, "dns": true, "logging": true, "ulimits": true,
		"mem_limit": true, "cpus": true, "deploy": true, "cap_drop": true,
		"cap_add": true, "security_opt": true, "shm_size": true, "sysctls": true,
		"privileged": true, "network_mode": true, "pid": true, "ipc": true,
		"devices": true, "hostname": true, "extends": true, "profiles": true,
		"depends_on": true, extKey: true,
	}
	// Of deploy:, resource limits and replicas map onto a single host.
	supportedDeployKeys    = map[string]bool{"resources": true, "replicas": true}
	supportedResourcesKeys = map[string]bool{"limits": true}
	supportedLimitsKeys    = map[string]bool{"cpus": true, "memory": true, "pids": true}

	supportedTopKeys = map[string]bool{
		"services": true, "networks": true, "volumes": true, "include": true,
		"name": true, "version": true,
	}
)
