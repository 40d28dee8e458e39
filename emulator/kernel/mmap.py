"""mm/mmap.c, mm/memory.c and mm/pgtable: an address space's anonymous
memory as the page allocator sees it.

mmap() reserves a range (a VMA), the first touch of each page faults it in
(do_anonymous_page(): one order-0 page from alloc_pages(GFP_HIGHUSER_MOVABLE)),
munmap() and exit_mmap() give the pages back through release_pages()
(free_unref_page_list()), and the mm's page-table root is one page allocated
at mm_init() (mm_alloc_pgd()) and freed at __mmdrop() (mm_free_pgd()).

Departures: only the pgd of the page tables is allocated (x86-64 without
PTI: one page); no page cache, swap or file mappings (fd must be -1 with
MAP_ANONYMOUS); a forked child gets the parent's VMAs but none of its pages,
as if every page it touches were a write that breaks copy-on-write (a
page it only reads would be shared in the kernel, and allocate nothing).
"""

from .page_alloc import GFP_HIGHUSER_MOVABLE, GFP_KERNEL

PAGE_SIZE = 4096
PROT_READ, PROT_WRITE = 1, 2
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20
MAP_FAILED = -1
EINVAL = 22
ENOMEM = 12
EFAULT = 14
TASK_SIZE = 1 << 47


class vm_area_struct:
    __slots__ = ("vm_start", "vm_end", "vm_flags")

    def __init__(self, start, end, flags):
        self.vm_start, self.vm_end, self.vm_flags = start, end, flags

    def __repr__(self):
        return f"vma({self.vm_start:#x}-{self.vm_end:#x})"


class Mmap:
    """Mixin."""

    def mm_alloc_pgd(self, mm):
        """mm_init()'s pgd_alloc(); -ENOMEM if no page."""
        mm.vmas = []
        mm.pages = {}                      # page address -> pfn (the PTEs of anonymous pages)
        mm.mmap_base = 0x7f0000000000
        mm.pgd = self.alloc_pages(GFP_KERNEL, 0)
        return 0 if mm.pgd is not None else -ENOMEM

    def mm_free_pgd(self, mm):
        """__mmdrop()'s pgd_free()."""
        pgd = getattr(mm, "pgd", None)
        if pgd is not None:
            mm.pgd = None
            self._free_pages(pgd, 0)

    def dup_mmap(self, mm, oldmm):
        """The child's VMAs are copies of the parent's; its pages are not
        (see the module's departures)."""
        mm.vmas = [vm_area_struct(v.vm_start, v.vm_end, v.vm_flags) for v in oldmm.vmas]
        mm.mmap_base = oldmm.mmap_base

    def exit_mmap(self, mm):
        """The last mmput(): every anonymous page goes back (unmap_vmas(),
        tlb_finish_mmu()'s release_pages())."""
        pages = getattr(mm, "pages", None)
        if pages:
            pfns = list(pages.values())
            pages.clear()
            self.release_pages(pfns)
        mm.vmas = []

    def find_vma(self, mm, addr):
        for vma in mm.vmas:
            if vma.vm_start <= addr < vma.vm_end:
                return vma
        return None

    def sys_mmap(self, addr, length, prot, flags, fd, offset):
        if length <= 0 or offset % PAGE_SIZE or not flags & MAP_ANONYMOUS or fd != -1 or \
                not flags & MAP_PRIVATE:
            return -EINVAL
        mm = self.cur.mm
        length = -(-length // PAGE_SIZE) * PAGE_SIZE
        start = mm.mmap_base - length                   # top-down, below the last mapping
        if start < PAGE_SIZE:
            return -ENOMEM
        mm.mmap_base = start
        mm.vmas.append(vm_area_struct(start, start + length, prot))
        return start

    def sys_munmap(self, addr, length):
        if addr % PAGE_SIZE or length <= 0:
            return -EINVAL
        mm = self.cur.mm
        end = addr + -(-length // PAGE_SIZE) * PAGE_SIZE
        kept = []
        for vma in mm.vmas:
            if vma.vm_end <= addr or vma.vm_start >= end:
                kept.append(vma)
                continue
            if vma.vm_start < addr:
                kept.append(vm_area_struct(vma.vm_start, addr, vma.vm_flags))
            if vma.vm_end > end:
                kept.append(vm_area_struct(end, vma.vm_end, vma.vm_flags))
        mm.vmas = kept
        pfns = [mm.pages.pop(page) for page in sorted(mm.pages) if addr <= page < end]
        self.release_pages(pfns)
        return 0

    def sys_touch(self, addr, length):
        """The user task writes to [addr, addr+length): each page not yet
        present faults (handle_mm_fault() -> do_anonymous_page()).  -EFAULT
        (the SIGSEGV of a user write) for an address outside every VMA,
        -ENOMEM when the allocator has no page (the OOM killer is not
        modelled)."""
        mm = self.cur.mm
        page = addr - addr % PAGE_SIZE
        end = addr + length
        while page < end:
            if page not in mm.pages:
                if self.find_vma(mm, page) is None:
                    return -EFAULT
                self.charge(self.costs["page_fault_ns"])
                pfn = self.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
                if pfn is None:
                    return -ENOMEM
                mm.pages[page] = pfn
            page += PAGE_SIZE
        return 0
