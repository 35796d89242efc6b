using static TorchSharp.torch;

namespace VarSharp.Tokenizer;

/// <summary>
/// The generator every dropout layer of one tokenizer draws from while training. TorchSharp's nn.Dropout only knows
/// torch's process-wide generator, which any other code (or a parallel test) also draws from and whose CUDA state a
/// checkpoint cannot hold; one generator owned by the trainer makes the masks a function of the run's seed and lets a
/// resume restore them.
/// </summary>
public sealed class DropoutSource
{
    public Generator? Generator { get; set; }
}
