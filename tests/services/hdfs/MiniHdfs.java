// A real HDFS for development and tests: Hadoop's MiniDFSCluster with one
// namenode and one datanode on 127.0.0.1. Started by `cargo xtask hdfs
// start`; prints "READY hdfs://127.0.0.1:<port>" once the datanode has
// registered, then serves until killed.
//
// usage: java -cp <classes>:<libs>/* MiniHdfs <base dir> <namenode port> [keep]
//
// With `keep`, the storage under <base dir> is reused as it is (a restart
// after a stop keeps every file); without it, it is formatted.

import java.io.File;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.MiniDFSCluster;

public class MiniHdfs {
    public static void main(String[] args) throws Exception {
        File base = new File(args[0]);
        int port = Integer.parseInt(args[1]);
        boolean keep = args.length > 2 && args[2].equals("keep");
        Configuration conf = new Configuration();
        conf.set("dfs.replication", "1");
        conf.set("dfs.permissions.enabled", "false");
        conf.set("dfs.namenode.rpc-bind-host", "127.0.0.1");
        conf.set("dfs.datanode.address", "127.0.0.1:0");
        conf.set("dfs.datanode.ipc.address", "127.0.0.1:0");
        conf.set("dfs.datanode.http.address", "127.0.0.1:0");
        conf.set("dfs.namenode.http-address", "127.0.0.1:0");
        conf.set("dfs.client.use.datanode.hostname", "false");
        conf.set("dfs.datanode.use.datanode.hostname", "false");
        conf.setLong("dfs.blocksize", 16L * 1024 * 1024);
        MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf, base)
                .nameNodePort(port)
                .numDataNodes(1)
                .format(!keep)
                .build();
        cluster.waitActive();
        cluster.waitClusterUp();
        Runtime.getRuntime().addShutdownHook(new Thread(cluster::shutdown));
        System.out.println("READY hdfs://127.0.0.1:" + cluster.getNameNodePort());
        System.out.flush();
        Thread.currentThread().join();
    }
}
