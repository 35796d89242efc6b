// MSBuild inline task (RoslynCodeTaskFactory). Why this exists: see docs/torchsharp-glibcxx.md.
// TorchSharp 0.107's libLibTorchSharp.so was linked against GCC 13's libstdc++ and records a version need on
// GLIBCXX_3.4.32, which Debian 12 (GCC 12, up to GLIBCXX_3.4.30) lacks. The only symbol behind that need,
// std::ios_base_library_init, is never called, so marking the need VER_FLG_WEAK lets the dynamic loader accept the
// library. The patch rewrites two bytes of .gnu.version_r in the build output only (never the NuGet cache), through
// a temp file and a rename, and is idempotent.
using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public class WeakenElfVersionNeed : Task
{
    [Required] public ITaskItem[] Files { get; set; } = Array.Empty<ITaskItem>();
    [Required] public string VersionName { get; set; } = "";

    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlgWeak = 0x2;

    public override bool Execute()
    {
        foreach (var item in Files)
        {
            var path = item.ItemSpec;
            try
            {
                var stamp = File.GetLastWriteTimeUtc(path);
                var bytes = File.ReadAllBytes(path);
                var result = Patch(bytes, VersionName);
                if (result == PatchResult.Patched)
                {
                    var tmp = path + ".weaken.tmp";
                    File.WriteAllBytes(tmp, bytes);
                    File.Replace(tmp, path, null);
                    // Keep the source's timestamp so MSBuild's incremental copy sees an unchanged file next build.
                    File.SetLastWriteTimeUtc(path, stamp);
                    Log.LogMessage(MessageImportance.High, $"WeakenElfVersionNeed: marked {VersionName} weak in {path}");
                }
                else
                {
                    Log.LogMessage(MessageImportance.Low, $"WeakenElfVersionNeed: {result} for {path}");
                }
            }
            catch (Exception e)
            {
                Log.LogError($"WeakenElfVersionNeed: cannot patch {path}: {e.Message}");
                return false;
            }
        }
        return !Log.HasLoggedErrors;
    }

    public enum PatchResult { Patched, AlreadyWeak, NotNeeded }

    public static PatchResult Patch(byte[] b, string versionName)
    {
        if (b.Length < 64 || b[0] != 0x7f || b[1] != (byte)'E' || b[2] != (byte)'L' || b[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (b[4] != 2 || b[5] != 1)
            throw new InvalidDataException("only 64-bit little-endian ELF is supported");
        ulong shoff = U64(b, 0x28);
        int shentsize = U16(b, 0x3A), shnum = U16(b, 0x3C);
        for (int i = 0; i < shnum; i++)
        {
            int sh = Checked(shoff + (ulong)(i * shentsize), 64, b.Length);
            if (U32(b, sh + 4) != ShtGnuVerneed) continue;
            int offset = Checked(U64(b, sh + 24), 0, b.Length);
            int link = (int)U32(b, sh + 40);
            int count = (int)U32(b, sh + 44); // sh_info: number of Verneed entries
            int strSh = Checked(shoff + (ulong)(link * shentsize), 64, b.Length);
            int strOff = Checked(U64(b, strSh + 24), 0, b.Length);
            int vn = offset;
            for (int n = 0; n < count; n++)
            {
                Checked((ulong)vn, 16, b.Length);
                int auxCount = U16(b, vn + 2);
                int aux = vn + (int)U32(b, vn + 8);
                for (int a = 0; a < auxCount; a++)
                {
                    Checked((ulong)aux, 16, b.Length);
                    if (CString(b, strOff + (int)U32(b, aux + 8)) == versionName)
                    {
                        ushort flags = (ushort)U16(b, aux + 4);
                        if ((flags & VerFlgWeak) != 0) return PatchResult.AlreadyWeak;
                        flags |= VerFlgWeak;
                        b[aux + 4] = (byte)flags;
                        b[aux + 5] = (byte)(flags >> 8);
                        return PatchResult.Patched;
                    }
                    aux += (int)U32(b, aux + 12);
                }
                vn += (int)U32(b, vn + 12);
            }
        }
        return PatchResult.NotNeeded;
    }

    private static int Checked(ulong offset, int length, int fileLength)
    {
        if (offset + (ulong)length > (ulong)fileLength) throw new InvalidDataException("ELF structure points outside the file");
        return (int)offset;
    }

    private static int U16(byte[] b, int o) => b[o] | (b[o + 1] << 8);
    private static uint U32(byte[] b, int o) => BitConverter.ToUInt32(b, o);
    private static ulong U64(byte[] b, int o) => BitConverter.ToUInt64(b, o);

    private static string CString(byte[] b, int o)
    {
        int end = o;
        while (end < b.Length && b[end] != 0) end++;
        return Encoding.ASCII.GetString(b, o, end - o);
    }
}
